"""``furui model score | evaluate | verify | novelty`` run as a user runs them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from correlator.ml.bundle import DEFAULT_VERSION, MODEL_NAME
from correlator.settings import load_settings
from correlator.testing import load_events
from tests.conftest import REPO, shared
from tests.test_cli import furui

SME = ("stratosphere-ctu-sme-11-labelled", "zeek-labeled", "conn.log.labeled")
MIRAI = ("iot23-labelled-subset", "CTU-Malware-Capture-44-1-labeled.csv")
SHIPPED = REPO / "correlator" / "models" / MODEL_NAME / DEFAULT_VERSION


def _scores(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("parts", [SME, MIRAI], ids=["zeek-tsv", "iot23-csv"])
def test_score_writes_one_row_per_conn_event(tmp_path: Path, parts: tuple[str, ...]) -> None:
    log = shared(*parts)
    out = tmp_path / "scores.csv"
    done = furui("model", "score", str(log), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _scores(out)
    uids = load_events(log).stream("zeek.connection").column("zeek.session_id").to_pylist()
    assert list(rows[0]) == ["uid", "score"]
    assert [r["uid"] for r in rows] == uids
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert f"{len(uids):,} conn events scored with {MODEL_NAME}@{DEFAULT_VERSION}" in done.stderr


def test_score_ranks_the_remcos_c2_flows_first(tmp_path: Path) -> None:
    log = shared(*SME)
    out = tmp_path / "scores.csv"
    assert furui("model", "score", str(log), "-o", str(out), cwd=tmp_path).returncode == 0
    events = load_events(log).stream("zeek.connection")
    labels = dict(
        zip(
            events.column("zeek.session_id").to_pylist(),
            events.column("zeek.connection.label").to_pylist(),
            strict=True,
        )
    )
    rows = sorted(_scores(out), key=lambda r: -float(r["score"]))
    top = rows[: sum(1 for v in labels.values() if v == "Malicious")]
    assert sum(labels[r["uid"]] == "Malicious" for r in top) / len(top) > 0.95


def test_score_of_a_folder_without_conn_logs_is_an_input_error(tmp_path: Path) -> None:
    dns = shared("stratosphere-ctu-zeek", "009-zeek-malicious", "data", "dns.log.labeled")
    done = furui("model", "score", str(dns), cwd=tmp_path)
    assert done.returncode == 3
    assert "no Zeek conn log" in done.stderr


def test_verify_the_shipped_bundle(tmp_path: Path) -> None:
    done = furui("model", "verify", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["model"] == f"{MODEL_NAME}@{DEFAULT_VERSION}"
    assert len(facts["artifact_sha256"]) == 64


def test_verify_a_tampered_bundle_fails_with_the_fix(tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(SHIPPED, copy)
    data = bytearray((copy / "model.skops").read_bytes())
    data[100] ^= 0xFF
    (copy / "model.skops").write_bytes(bytes(data))
    done = furui("model", "verify", "--model", str(copy), cwd=tmp_path)
    assert done.returncode == 6
    assert done.stderr.startswith("furui: error: ")
    assert "furui model train" in done.stderr


def test_evaluate_prints_captures_and_families(tmp_path: Path) -> None:
    done = furui("model", "evaluate", "--data", str(shared(*SME)), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == f"{MODEL_NAME}@{DEFAULT_VERSION}"
    # the shipped model was trained on this capture: said so, not hidden
    assert result["trained_on"] == ["zeek-labeled/conn.log.labeled"]
    assert set(result["per_family"]) == {"RemcosRAT"}
    assert result["pooled"]["malicious"] == 719
    table = furui("model", "evaluate", "--data", str(shared(*SME)), cwd=tmp_path)
    assert "RemcosRAT" in table.stdout
    assert "in-sample" in table.stdout


def test_novelty_model_fits_and_flags_a_site_s_rare_flows(tmp_path: Path) -> None:
    """Fit on one day of a site's traffic, then run with ml.novelty_path pointing at it."""
    site = shared("stratosphere-ctu-zeek", "010-zeek-mixed", "data", "conn.log.labeled")
    out = tmp_path / "novelty"
    done = furui("model", "novelty", "--data", str(site), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "novelty"
    assert manifest["flows"] == 5347
    # the novelty signal runs only when configured, and then with its own ruleset
    assert load_settings().ml.novelty_path == ""
    config = tmp_path / "site.toml"
    config.write_text(f'[ml]\nnovelty_path = "{out}"\n[network]\ninternal = ["147.32.0.0/16"]\n')
    run = furui(
        "analyze",
        str(site),
        "--config",
        str(config),
        "--db",
        str(tmp_path / "f.duckdb"),
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    rulesets = {
        e["rule"]["ruleset"]
        for i in json.loads(run.stdout)["incidents"]
        for e in i["furui"]["evidence"]
    }
    assert "ml-novelty" in rulesets
