"""The shipped bundle verifies, and every kind of bad bundle is refused (fail closed)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from correlator.errors import ExitCode, ModelError
from correlator.ml.bundle import (
    DEFAULT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    MODEL_NAME,
    ModelBundle,
    canonical_skops,
    major_minor,
    serialise,
)
from correlator.ml.features import FEATURE_NAMES, FEATURE_SCHEMA_HASH
from correlator.settings import load_settings
from tests.conftest import REPO

SHIPPED = REPO / "correlator" / "models" / MODEL_NAME / DEFAULT_VERSION


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped bundle."""
    target = tmp_path / DEFAULT_VERSION
    shutil.copytree(SHIPPED, target)
    return target


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_shipped_bundle_verifies_from_the_package() -> None:
    bundle = ModelBundle.load()
    assert bundle.ref == f"{MODEL_NAME}@{DEFAULT_VERSION}"
    assert bundle.manifest.feature_schema_hash == FEATURE_SCHEMA_HASH
    assert bundle.manifest.feature_names == FEATURE_NAMES
    assert 0 < bundle.threshold < 1
    # found inside the installed package, not relative to the working directory
    shipped = resources.files("correlator.models").joinpath(MODEL_NAME, DEFAULT_VERSION)
    assert shipped.joinpath(MANIFEST_FILE).is_file()


def test_shipped_bundle_is_small_and_complete() -> None:
    assert sorted(p.name for p in SHIPPED.iterdir()) == [MANIFEST_FILE, "metrics.json", MODEL_FILE]
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 1 << 20


def test_pyproject_bound_is_the_bundle_sklearn_version() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (bound,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("scikit-learn")]
    trained = major_minor(ModelBundle.load().manifest.sklearn_version)
    major, minor = (int(x) for x in trained.split("."))
    assert bound.replace(" ", "") == f"scikit-learn>={trained},<{major}.{minor + 1}"
    assert major_minor(sklearn.__version__) == trained


def test_settings_expect_the_shipped_version() -> None:
    assert load_settings().ml.expected_version == DEFAULT_VERSION


def test_artifact_is_canonical() -> None:
    """Saving the loaded model again gives the same bytes: the sha256 is reproducible."""
    bundle = ModelBundle.load()
    data = (SHIPPED / MODEL_FILE).read_bytes()
    assert serialise(bundle.pipeline) == data
    assert canonical_skops(data) == data
    assert hashlib.sha256(data).hexdigest() == bundle.manifest.artifact_sha256


def test_tampered_artifact_is_refused(copy: Path) -> None:
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"altered or damaged.*furui model train") as error:
        ModelBundle.load(copy)
    assert error.value.exit_code is ExitCode.MODEL


def test_other_feature_schema_is_refused(copy: Path) -> None:
    _edit_manifest(copy, feature_schema_hash="0" * 64)
    with pytest.raises(ModelError, match=r"feature schema 000000000000.*retrain"):
        ModelBundle.load(copy)


def test_other_feature_order_is_refused(copy: Path) -> None:
    _edit_manifest(copy, feature_names=list(reversed(FEATURE_NAMES)))
    with pytest.raises(ModelError, match="feature schema"):
        ModelBundle.load(copy)


@pytest.mark.parametrize("version", ["1.8.2", "2.0.0"])
def test_other_sklearn_version_is_refused(copy: Path, version: str) -> None:
    _edit_manifest(copy, sklearn_version=version)
    fix = re.escape(f"install scikit-learn=={major_minor(version)}.*")
    with pytest.raises(ModelError, match=f"trained with scikit-learn {version}.*{fix}"):
        ModelBundle.load(copy)


def test_untrusted_types_are_refused(copy: Path) -> None:
    """An artifact that would call a function outside the trusted list is never loaded."""
    hostile = canonical_skops(sio.dumps(Pipeline([("f", FunctionTransformer(print))])))
    (copy / MODEL_FILE).write_bytes(hostile)
    _edit_manifest(copy, artifact_sha256=hashlib.sha256(hostile).hexdigest())
    with pytest.raises(ModelError, match=r"outside the trusted list \(builtins.print\)"):
        ModelBundle.load(copy)


def test_missing_bundle_is_an_error_not_a_fresh_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model bundle here"):
        ModelBundle.load(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_missing_artifact_is_an_error(copy: Path) -> None:
    (copy / MODEL_FILE).unlink()
    with pytest.raises(ModelError, match="missing from the bundle"):
        ModelBundle.load(copy)


def test_invalid_manifest_is_an_error(copy: Path) -> None:
    _edit_manifest(copy, threshold=1.5)
    with pytest.raises(ModelError, match="invalid manifest"):
        ModelBundle.load(copy)


def test_unexpected_version_is_refused(copy: Path) -> None:
    with pytest.raises(ModelError, match=r"settings expect 2099\.01\.1"):
        ModelBundle.load(copy, expected_version="2099.01.1")


def test_scores_are_probabilities_in_blocks() -> None:
    bundle = ModelBundle.load()
    rows = np.full((40000, len(FEATURE_NAMES)), np.nan)
    scores = bundle.probability(rows)
    assert scores.shape == (40000,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(scores == scores[0])  # identical rows, identical scores across blocks
