"""Model bundles: a fitted pipeline in skops format, its manifest and metrics; fail closed.

A bundle is a folder named after its CalVer version::

    correlator/models/flow-classifier/2026.11.2/
    ├── model.skops      # skops.io, loaded with the explicit TRUSTED_TYPES only
    ├── manifest.json    # provenance: versions, feature hash, threshold, data fingerprint
    └── metrics.json     # leave-one-capture-out metrics at the threshold

``ModelBundle.load`` verifies, before trusting anything in the folder, that the artifact's
sha256 is the manifest's, that the manifest's feature-schema hash is this code's
(``features.FEATURE_SCHEMA_HASH``), that the scikit-learn major.minor it was trained with is
the one installed, and that the artifact holds no type outside ``TRUSTED_TYPES``. Anything
else raises ``ModelError`` naming the fix. A missing or bad bundle is never replaced by a
fresh model. The default bundle is found through ``importlib.resources`` (inside the
installed package), never relative to the working directory.

skops writes object ids and the time into its zip, so two saves of the same model differ;
``canonical_skops`` renumbers the ids in order of appearance and fixes the timestamps, so
the same training data and seed give a byte-identical artifact and sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sklearn
import skops
import skops.io as sio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from correlator.errors import ModelError
from correlator.ml import MODEL_NAME as MODEL_NAME  # noqa: PLC0414 - re-exported
from correlator.ml.features import FEATURE_NAMES, FEATURE_SCHEMA_HASH

MODEL_FILE: Final = "model.skops"
MANIFEST_FILE: Final = "manifest.json"
METRICS_FILE: Final = "metrics.json"
#: The shipped bundle's version; a new one is promoted by changing this and the setting.
DEFAULT_VERSION: Final = "2026.11.2"
_CALVER: Final = re.compile(r"^\d{4}\.(0[1-9]|1[0-2])\.[1-9]\d*$")
#: Types beyond skops' defaults that a flow-classifier artifact may hold, reviewed: the
#: calibrated wrapper, its sigmoid calibrator, the boosted trees, the splitter recorded as
#: the calibration's ``cv``, and ``check_array`` wrapped in a ``partial`` (the booster's
#: input validation). Any other type in a file refuses the load.
TRUSTED_TYPES: Final = (
    "functools.partial",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.GroupKFold",
    "sklearn.utils.validation.check_array",
)
_FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
#: Rows predicted per call: with 39 features 64k rows measured fastest (bench/model.py:
#: 0.95M flows/s at 16k, 1.05M at 64k); memory stays bounded per call.
_PREDICT_ROWS: Final = 65536
_RETRAIN: Final = "retrain with `furui model train` (docs/model.md)"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class TrainingFile(BaseModel):
    """One capture used for training."""

    model_config = _FROZEN

    name: str = Field(description="<data root>/<path under it>.")
    sha256: str = Field(description="sha256 of the file's bytes.")
    flows: int = Field(description="Flows in the file.")
    rows: int = Field(description="Flows with a usable label (training rows).")
    label_counts: dict[str, int] = Field(description="Raw label text → flows.")


class TrainingData(BaseModel):
    """What the model was trained on."""

    model_config = _FROZEN

    datasets: tuple[str, ...] = Field(description="Data roots given to `furui model train`.")
    files: tuple[TrainingFile, ...] = Field(description="Captures, one per labelled conn log.")
    row_selection: str = Field(description="Which rows became training rows.")
    label_mapping: dict[str, int | None] = Field(description="Label → class (None: unused).")
    rows: int = Field(description="Training rows.")
    label_counts: dict[str, int] = Field(description="Training rows per class.")
    dataset_sha256: str = Field(description="Fingerprint of files, rows and label mapping.")


class Manifest(BaseModel):
    """Provenance of a bundle (``manifest.json``)."""

    model_config = _FROZEN

    name: str = Field(description="Model line, e.g. flow-classifier.")
    version: str = Field(pattern=_CALVER.pattern, description="CalVer YYYY.MM.N.")
    created_at: datetime = Field(description="When the bundle was written (UTC).")
    git_commit: str | None = Field(description="Commit of the code that trained it.")
    python: str = Field(description="Python version used for training.")
    sklearn_version: str = Field(description="scikit-learn version used for training.")
    skops_version: str = Field(description="skops version that wrote the artifact.")
    feature_names: tuple[str, ...] = Field(description="Columns of the feature matrix.")
    feature_schema_hash: str = Field(description="features.FEATURE_SCHEMA_HASH at training.")
    threshold: float = Field(ge=0, le=1, description="Operating threshold on the probability.")
    random_state: int = Field(description="Seed of the training.")
    artifact_sha256: str = Field(description="sha256 of model.skops.")
    command: str = Field(description="The command that trained it.")
    hyperparameters: dict[str, float | int | str] = Field(description="TrainConfig values.")
    reference: tuple[float | None, ...] = Field(
        description="Typical benign value per feature, used by explanations."
    )
    training_data: TrainingData


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A verified model: the pipeline, its manifest and its metrics."""

    pipeline: Pipeline
    manifest: Manifest
    metrics: dict[str, Any]

    @property
    def ref(self) -> str:
        """``name@version``, as recorded on findings and incidents."""
        return f"{self.manifest.name}@{self.manifest.version}"

    @property
    def threshold(self) -> float:
        """The operating threshold."""
        return self.manifest.threshold

    def reference(self) -> npt.NDArray[np.float64]:
        """The explanation reference values as an array (NaN where unknown)."""
        return np.array([math.nan if v is None else v for v in self.manifest.reference])

    def probability(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probability of malice for each feature row."""
        return predict_blocks(lambda block: self.pipeline.predict_proba(block)[:, 1], features)

    def summary(self, score: float) -> str:
        """A score in words, for finding messages."""
        return (
            f"flow classifier {self.ref}: probability {score:.2f} of malicious traffic "
            f"(threshold {self.threshold:.2f})"
        )

    @classmethod
    def load(cls, path: Path | None = None, *, expected_version: str | None = None) -> ModelBundle:
        """Load and verify a bundle; the shipped default when ``path`` is ``None``.

        Args:
            path: a bundle folder (holding ``manifest.json``).
            expected_version: refuse a bundle of another version.

        Raises:
            ModelError: the bundle is missing, altered, made for other code or another
                scikit-learn, or holds untrusted types; the message says what to do.
        """
        if path is None:
            version = expected_version or DEFAULT_VERSION
            shipped = resources.files("correlator.models").joinpath(MODEL_NAME, version)
            with resources.as_file(shipped) as folder:
                return cls._load(Path(folder), expected_version)
        return cls._load(path, expected_version)

    @classmethod
    def _load(cls, folder: Path, expected_version: str | None) -> ModelBundle:
        manifest = read_manifest(folder)
        check_compatible(
            manifest.feature_schema_hash, manifest.feature_names, manifest.sklearn_version, folder
        )
        if expected_version is not None and manifest.version != expected_version:
            raise ModelError(
                f"{folder}: bundle version {manifest.version}, but settings expect "
                f"{expected_version} (ml.expected_version): promote it by changing that setting"
            )
        pipeline = verified_artifact(folder, manifest.artifact_sha256, TRUSTED_TYPES)
        if not isinstance(pipeline, Pipeline):
            raise ModelError(f"{folder / MODEL_FILE}: not a scikit-learn Pipeline; {_RETRAIN}")
        metrics_path = folder / METRICS_FILE
        metrics = json.loads(_read(metrics_path)) if metrics_path.is_file() else {}
        return cls(pipeline, manifest, metrics)

    def save(self, root: Path) -> Path:
        """Write the bundle as ``root/<version>/`` (refusing to overwrite one).

        The manifest must already carry the artifact's sha256 (see ``serialise``).

        Raises:
            ModelError: the version folder exists already.
        """
        folder = root / self.manifest.version
        if folder.exists():
            raise ModelError(f"{folder}: exists; bundles are immutable, choose a new --version")
        folder.mkdir(parents=True)
        (folder / MODEL_FILE).write_bytes(serialise(self.pipeline))
        write_json(folder / MANIFEST_FILE, self.manifest.model_dump(mode="json"))
        write_json(folder / METRICS_FILE, self.metrics)
        return folder


def predict_blocks(
    predict: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    features: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Apply ``predict`` to blocks of rows (bounded memory, faster than one large call)."""
    out = np.empty(len(features), dtype=np.float64)
    # one thread per process, as the pipeline runs: a block is too small to share out
    with threadpool_limits(limits=1, user_api="openmp"):
        for start in range(0, len(features), _PREDICT_ROWS):
            block = features[start : start + _PREDICT_ROWS]
            out[start : start + len(block)] = predict(block)
    return out


def serialise(pipeline: Pipeline) -> bytes:
    """The pipeline in canonical skops bytes (same model, same bytes)."""
    return canonical_skops(sio.dumps(pipeline))


def artifact_sha256(pipeline: Pipeline) -> str:
    """sha256 of the canonical artifact of ``pipeline``."""
    return hashlib.sha256(serialise(pipeline)).hexdigest()


def read_manifest(folder: Path) -> Manifest:
    """Parse and validate ``folder/manifest.json``.

    Raises:
        ModelError: the folder or manifest is missing or invalid.
    """
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no model bundle here (no {MANIFEST_FILE}); {_RETRAIN}")
    try:
        return Manifest.model_validate_json(_read(path))
    except ValidationError as error:
        raise ModelError(f"{path}: invalid manifest: {error}; {_RETRAIN}") from error


def check_compatible(
    schema_hash: str, feature_names: tuple[str, ...], sklearn_version: str, where: Path
) -> None:
    """Refuse a model made for other feature code or another scikit-learn.

    Raises:
        ModelError: the feature schema or scikit-learn major.minor differ.
    """
    if schema_hash != FEATURE_SCHEMA_HASH or tuple(feature_names) != tuple(FEATURE_NAMES):
        raise ModelError(
            f"{where}: trained on feature schema {schema_hash[:12]}, but this Furui computes "
            f"{FEATURE_SCHEMA_HASH[:12]}; {_RETRAIN}"
        )
    trained, installed = major_minor(sklearn_version), major_minor(sklearn.__version__)
    if trained != installed:
        raise ModelError(
            f"{where}: trained with scikit-learn {sklearn_version}, but "
            f"{sklearn.__version__} is installed: install scikit-learn=={trained}.* "
            f"(constraints.txt), or {_RETRAIN}"
        )


def verified_artifact(folder: Path, expected_sha256: str, trusted: tuple[str, ...]) -> object:
    """Load ``folder/model.skops`` after checking its sha256 and its types.

    Raises:
        ModelError: the file is missing, altered, or holds a type outside ``trusted``.
    """
    data = _read(folder / MODEL_FILE)
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ModelError(
            f"{folder / MODEL_FILE}: sha256 {digest} is not the manifest's {expected_sha256}: "
            f"the file was altered or damaged; reinstall Furui, or {_RETRAIN}"
        )
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
    if untrusted:
        raise ModelError(
            f"{folder / MODEL_FILE}: holds types outside the trusted list "
            f"({', '.join(untrusted)}); refusing to load it. {_RETRAIN}"
        )
    return sio.loads(data, trusted=list(trusted))


def major_minor(version: str) -> str:
    """``1.9`` of ``1.9.1``."""
    return ".".join(version.split(".")[:2])


def skops_version() -> str:
    """The installed skops version."""
    return str(skops.__version__)


def next_version(root: Path, today: datetime) -> str:
    """The next CalVer version under ``root`` for ``today``'s month: ``YYYY.MM.N``."""
    prefix = f"{today:%Y.%m}."
    taken = [
        int(p.name[len(prefix) :])
        for p in (root.iterdir() if root.is_dir() else [])
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    ]
    return f"{prefix}{max(taken, default=0) + 1}"


def canonical_skops(data: bytes) -> bytes:
    """Rewrite a skops zip deterministically: ids renumbered, fixed times, sorted entries."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read("schema.json"))
        files = {name: source.read(name) for name in source.namelist() if name != "schema.json"}
    ids: dict[int, int] = {}
    renamed = _renumber(schema, ids)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        entries = [("schema.json", json.dumps(renamed, indent=2).encode())]
        entries += sorted((_file_name(name, ids), content) for name, content in files.items())
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, content, compresslevel=9)
    return out.getvalue()


def _renumber(node: Any, ids: dict[int, int]) -> Any:  # noqa: ANN401 - a JSON tree
    if isinstance(node, list):
        return [_renumber(item, ids) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            out[key] = ids.setdefault(value, len(ids) + 1)
        elif key == "file" and isinstance(value, str) and value.endswith(".npy"):
            out[key] = _file_name(value, ids)
        else:
            out[key] = _renumber(value, ids)
    return out


def _file_name(name: str, ids: dict[int, int]) -> str:
    stem = name.removesuffix(".npy")
    if stem.isdigit():
        return f"{ids.setdefault(int(stem), len(ids) + 1):06d}.npy"
    return name


def write_json(path: Path, data: Any) -> None:  # noqa: ANN401 - any JSON value
    """Write JSON the way bundles keep it: indented, keys in order, newline at the end."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise ModelError(f"{path}: missing from the bundle; {_RETRAIN}") from error
    except OSError as error:
        raise ModelError(f"{path}: cannot read ({error.strerror or error})") from error
