"""Training is reproducible, the shipped bundle is what its command makes, and a model
trained on the shared captures clears metric floors on captures it has not seen.

The floors are requirements set before looking at a particular run, with their reasons
next to them; the measured values are in ``docs/model.md``. They cover the behaviours the
shared data holds more than one example of (repeated failed C2 connections: Hakai and
RemcosRAT; inbound attacks on three different hosts). Families with a single, unlike
capture (NjRAT, Mirai, Torii) have no recall floor: the model does not find them when
their capture is held out, and docs/model.md says so.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from correlator.ml.bundle import DEFAULT_VERSION, MODEL_NAME, ModelBundle
from tests.conftest import REPO, shared
from tests.test_cli import furui

SHIPPED = REPO / "correlator" / "models" / MODEL_NAME / DEFAULT_VERSION
#: Small captures of both classes, enough to train a model in seconds.
SMALL = (
    ("stratosphere-ctu-sme-11-labelled",),
    ("stratosphere-ctu-zeek", "001-zeek-scenario-malicious"),
    ("iot23-labelled-subset", "CTU-Malware-Capture-44-1-labeled.csv"),
    ("iot23-labelled-subset", "CTU-Honeypot-Capture-4-1-labeled.csv"),
)
#: Manifest fields that describe the run, not the model.
RUN_FIELDS = ("created_at", "git_commit")


def _train(out: Path, data: list[Path], version: str = "2026.11.1") -> Path:
    args = [a for p in data for a in ("--data", str(p))]
    done = furui("model", "train", *args, "--out", str(out), "--version", version, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return out / version


def _manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return data


def test_same_data_and_seed_give_the_same_bundle(tmp_path: Path) -> None:
    data = [shared(*parts) for parts in SMALL]
    first = _train(tmp_path / "a", data)
    second = _train(tmp_path / "b", data)
    one, two = _manifest(first), _manifest(second)
    for field in RUN_FIELDS:
        one.pop(field)
        two.pop(field)
    # the command names the output folder, which differs on purpose
    one.pop("command")
    two.pop("command")
    assert one == two
    assert (first / "model.skops").read_bytes() == (second / "model.skops").read_bytes()
    assert (first / "metrics.json").read_text() == (second / "metrics.json").read_text()
    bundle = ModelBundle.load(first)
    files = bundle.manifest.training_data.files
    assert len(files) == 4
    assert all(len(f.sha256) == 64 and f.rows for f in files)
    assert bundle.manifest.training_data.label_mapping["background"] is None


def test_bundles_are_never_overwritten(tmp_path: Path) -> None:
    data = [shared(*parts) for parts in SMALL[:3]]
    (tmp_path / "2026.11.7").mkdir()
    args = [a for p in data for a in ("--data", str(p))]
    again = furui(
        "model", "train", *args, "--out", str(tmp_path), "--version", "2026.11.7", cwd=REPO
    )
    assert again.returncode == 6
    assert "bundles are immutable" in again.stderr


def test_three_labelled_captures_are_required(tmp_path: Path) -> None:
    data = [shared(*parts) for parts in SMALL[:2]]
    args = [a for p in data for a in ("--data", str(p))]
    done = furui("model", "train", *args, "--out", str(tmp_path), cwd=REPO)
    assert done.returncode == 3
    assert "3 captures or more (found 2" in done.stderr


def test_labels_are_required(tmp_path: Path) -> None:
    unlabelled = shared("stratosphere-ctu-zeek", "003-zeek-scenario-malicious")
    done = furui("model", "train", "--data", str(unlabelled), "--out", str(tmp_path), cwd=REPO)
    assert done.returncode == 3
    assert "no labelled Zeek conn log" in done.stderr


# -- the shipped model, retrained from its documented command (slow: about a minute) --


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped bundle's own ``command``, run again with another output folder."""
    for root in (
        "stratosphere-ctu-zeek",
        "stratosphere-ctu-sme-11-labelled",
        "iot23-labelled-subset",
    ):
        shared(root)
    args = shlex.split(_manifest(SHIPPED)["command"])
    assert args[:3] == ["furui", "model", "train"]
    out = tmp_path_factory.mktemp("retrain")
    args[args.index("--out") + 1] = str(out)
    done = furui(*args[1:], cwd=REPO)
    assert done.returncode == 0, done.stderr
    return out / DEFAULT_VERSION


@pytest.mark.slow
def test_retraining_reproduces_the_shipped_bundle(retrained: Path) -> None:
    shipped, again = _manifest(SHIPPED), _manifest(retrained)
    assert again["training_data"] == shipped["training_data"]
    assert again["feature_schema_hash"] == shipped["feature_schema_hash"]
    assert again["threshold"] == pytest.approx(shipped["threshold"], abs=0.02)
    metrics = json.loads((retrained / "metrics.json").read_text())
    expected = json.loads((SHIPPED / "metrics.json").read_text())
    # stated tolerance: training is deterministic on one machine (same bytes), but float
    # sums in scikit-learn's threaded histograms may differ in the last bits elsewhere
    assert metrics["pooled"]["pr_auc"] == pytest.approx(expected["pooled"]["pr_auc"], abs=0.01)
    for name, capture in expected["per_capture"].items():
        for key in ("recall", "fpr"):
            if capture[key] is not None:
                got = metrics["per_capture"][name][key]
                assert got == pytest.approx(capture[key], abs=0.02), (name, key)
    for name, family in expected["per_family"].items():
        got = metrics["per_family"][name]["recall"]
        assert got == pytest.approx(family["recall"], abs=0.02), name


@pytest.mark.slow
def test_cross_capture_metrics_clear_the_floors(retrained: Path) -> None:
    metrics = json.loads((retrained / "metrics.json").read_text())
    pooled = metrics["pooled"]
    # ranking across networks it has not seen: below 0.95 the top of the list an analyst
    # reads would hold more than one benign flow in twenty
    assert pooled["pr_auc"] >= 0.95
    # the threshold rule flags at most 1 % of benign held-out flows; 2 % leaves room for
    # data changes before the rule itself is wrong
    assert pooled["fpr"] <= 0.02
    # behaviours seen in more than one capture must carry over to the held-out one: nine
    # in ten of their flows found at the operating threshold
    for family in ("Hakai", "RemcosRAT", "inbound attacks"):
        assert metrics["per_family"][family]["recall"] >= 0.9, family
    per_capture = metrics["per_capture"]
    for name, capture in per_capture.items():
        if capture["malicious"] and any(
            key in name for key in ("Capture-8-1", "sme-11", "008-", "010-", "011-")
        ):
            assert capture["pr_auc"] >= 0.9, name
