"""The shipped model in the pipeline: findings on infected hosts, none on benign ones.

Hosts and peers are the ones the datasets' READMEs name. The labelled captures were part
of the shipped model's training data, so on them these are in-sample checks of the wiring;
the Nmap capture (``002``, unlabelled) was never used for training and is out of sample.
How the model does on captures it has not seen is measured in ``test_ml_training.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from correlator.errors import ModelError
from correlator.ml.bundle import ModelBundle
from correlator.ml.detector import HELD, MAX_HELD_FLOWS, RULESET, FlowClassifier, project
from correlator.ml.explain import drivers
from correlator.ml.features import (
    FEATURE_NAMES,
    FEATURES,
    INPUT_COLUMNS,
    describe,
    extract,
    window_of,
)
from correlator.normalise.addresses import Networks
from correlator.pipeline import analyze
from correlator.settings import Settings
from correlator.sinks.ndjson import documents
from correlator.state import Store
from correlator.testing import DEFAULT_INTERNAL, load_events
from tests.conftest import Runner, shared

SME = ("stratosphere-ctu-sme-11-labelled", "zeek-labeled", "conn.log.labeled")
REMCOS_HOST = "192.168.1.107"  # README: the infected Windows 7 VM
REMCOS_C2 = "66.63.168.35"
IOT = "iot23-labelled-subset"
HAKAI = "CTU-Malware-Capture-8-1-labeled.csv"


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.load()


def _detector(
    bundle: ModelBundle, max_held: int = MAX_HELD_FLOWS, *, extra: tuple[str, ...] = ()
) -> FlowClassifier:
    internal = Networks.of([*DEFAULT_INTERNAL, *extra])
    return FlowClassifier(bundle, internal, 0.5, 0.75, max_held=max_held)


def _findings(detector: FlowClassifier, events: pa.Table) -> pa.Table:
    return pa.concat_tables([detector.observe("zeek.connection", events), detector.finish()])


def _ml_evidence(incident: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in incident["furui"]["evidence"] if e["rule"]["ruleset"] == RULESET]


def test_held_flows_keep_every_feature_input() -> None:
    assert set(INPUT_COLUMNS) <= set(HELD.names)


def test_remcos_host_gets_an_explained_incident(run: Runner, bundle: ModelBundle) -> None:
    report = run([shared(*SME)])
    incidents = {d["host"]["ip"]: d for d in documents(report.incidents)}
    assert REMCOS_HOST in incidents
    incident = incidents[REMCOS_HOST]
    assert incident["furui"]["model"] == bundle.ref
    (evidence,) = _ml_evidence(incident)
    assert evidence["rule"]["id"] == bundle.ref
    assert REMCOS_C2 in evidence["peers"]
    assert evidence["score"] >= 100 * bundle.threshold * 0.75
    # the explanation names features in words, as features.describe says them
    message = evidence["message"]
    assert message.startswith(f"flow classifier {bundle.ref}: probability ")
    phrases = {f.phrase.split("{v}")[-1].strip() for f in FEATURES}
    assert sum(p in message for p in phrases if p) >= 2, message
    # the C2 flows are referenced by their Zeek uids
    assert evidence["references"]["zeek"]["session_id"]


def test_benign_hosts_of_the_remcos_capture_get_nothing(bundle: ModelBundle) -> None:
    events = load_events(shared(*SME)).stream("zeek.connection")
    findings = _findings(_detector(bundle), events)
    assert set(findings.column("host.ip").to_pylist()) == {REMCOS_HOST}
    assert set(findings.column("destination.ip").to_pylist()) == {REMCOS_C2}


@pytest.mark.parametrize(
    "name", ["CTU-Honeypot-Capture-4-1-labeled.csv", "CTU-Honeypot-Capture-5-1-labeled.csv"]
)
def test_benign_iot_devices_get_no_findings(bundle: ModelBundle, name: str) -> None:
    """A Philips HUE and an Amazon Echo, benign for 24 and 5.4 hours."""
    events = load_events(shared(IOT, name)).stream("zeek.connection")
    assert _findings(_detector(bundle), events).num_rows == 0


def test_unseen_nmap_scanner_is_flagged_as_source(bundle: ModelBundle) -> None:
    """Capture 002 (Nmap scans from 172.16.1.11) was never used for training."""
    events = load_events(
        shared("stratosphere-ctu-zeek", "002-zeek-scenario-port-scanning", "conn.log")
    ).stream("zeek.connection")
    findings = _findings(_detector(bundle), events)
    roles = Counter(
        zip(
            findings.column("host.ip").to_pylist(),
            findings.column("furui.role").to_pylist(),
            strict=True,
        )
    )
    assert roles.most_common(1)[0][0] == ("172.16.1.11", "source")
    assert roles[("172.16.1.11", "source")] > 0.5 * events.num_rows


def _assert_same_findings(streamed: pa.Table, whole: pa.Table) -> None:
    """The same finding ids, each with the same risk score."""
    assert sorted(streamed.column("finding.id").to_pylist()) == sorted(
        whole.column("finding.id").to_pylist()
    )
    scores = dict(
        zip(
            whole.column("finding.id").to_pylist(),
            whole.column("event.risk_score").to_pylist(),
            strict=True,
        )
    )
    for fid, score in zip(
        streamed.column("finding.id").to_pylist(),
        streamed.column("event.risk_score").to_pylist(),
        strict=True,
    ):
        assert score == scores[fid]


def test_streaming_and_resuming_score_like_one_pass(bundle: ModelBundle) -> None:
    """Windows are scored once closed; state saved between batches changes nothing."""
    events = load_events(shared(IOT, HAKAI)).stream("zeek.connection")
    whole = _findings(_detector(bundle), events)
    state, parts, progressive = b"", [], 0
    for start in range(0, events.num_rows, 1500):
        # no dns/ssl log: nothing waits for them, windows are scored two windows later
        detector = _detector(bundle)
        detector.restore(state)  # a new run picks up where the last stopped
        part = detector.observe("zeek.connection", events.slice(start, 1500))
        progressive += part.num_rows
        parts.append(part)
        state = detector.snapshot()
    last = _detector(bundle)
    last.restore(state)
    parts.append(last.finish())
    streamed = pa.concat_tables(parts)
    assert progressive > 0.5 * whole.num_rows  # most findings came before the end
    _assert_same_findings(streamed, whole)


def test_ml_off_is_explicit_and_recorded(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    off = settings.model_copy(update={"ml": settings.ml.model_copy(update={"enabled": False})})
    with Store.open(off.store.path) as store, caplog.at_level("WARNING"):
        report = analyze([shared(*SME)], off, store)
    docs = documents(report.incidents)
    assert all(d["furui"]["model"] == "disabled" for d in docs)
    assert not any(_ml_evidence(d) for d in docs)
    assert "ml.enabled = false" in caplog.text


def test_a_bad_bundle_stops_the_run(settings: Settings, tmp_path: Path) -> None:
    """Fail closed: a configured bundle that does not verify is never skipped or replaced."""
    bad = settings.model_copy(
        update={"ml": settings.ml.model_copy(update={"path": str(tmp_path / "nothing")})}
    )
    with Store.open(bad.store.path) as store, pytest.raises(ModelError, match="no model bundle"):
        analyze([shared(*SME)], bad, store)


def test_explanations_name_the_drivers_with_their_values(bundle: ModelBundle) -> None:
    events = load_events(shared(*SME)).stream("zeek.connection")
    findings = _findings(_detector(bundle), events)
    matrix = extract(events)
    ids = events.column("event.id").to_pylist()
    for event_id, message in zip(
        findings.column("event.id").to_pylist()[:20],
        findings.column("message").to_pylist()[:20],
        strict=True,
    ):
        row = matrix[ids.index(event_id)]
        (named,) = drivers(bundle, row[None, :])
        assert named, "a flagged flow has at least one driving feature"
        for index in named:
            assert describe(index, float(row[index])) in message
        # setting the drivers to their benign reference lowers the score
        calmer = row.copy()
        calmer[named] = bundle.reference()[named]
        assert bundle.probability(calmer[None, :])[0] < bundle.probability(row[None, :])[0]


TLS_CAPTURE = ("stratosphere-ctu-zeek", "010-zeek-mixed", "data")
EXPOSED = ("147.32.83.234/32",)  # README: the Windows PC exposed to the Internet


def _streams(folder: Path) -> list[tuple[str, pa.Table]]:
    """A file run's order: the dns log, the ssl log, then the conn log (``discover``)."""
    return [
        ("zeek.dns", load_events(folder / "dns.log.labeled").stream("zeek.dns")),
        ("zeek.ssl", load_events(folder / "ssl.log.labeled").stream("zeek.ssl")),
        ("zeek.connection", load_events(folder / "conn.log.labeled").stream("zeek.connection")),
    ]


def test_dns_and_tls_context_is_joined_as_in_training(bundle: ModelBundle) -> None:
    """Read in a file run's order, flows get their windows' ssl context, as in training."""
    streams = _streams(shared(*TLS_CAPTURE))
    detector = _detector(bundle, extra=EXPOSED)
    assert {name for name, _ in streams} <= detector.streams
    dns, ssl, conn = (t for _, t in streams)
    assert len(set(window_of(ssl).tolist())) > 2  # the ssl log spans several windows
    early = [detector.observe("zeek.dns", dns), detector.observe("zeek.ssl", ssl)]
    # before any flow, every ssl row is kept for the windows the flows will fall in
    assert sum(t.num_rows for t in detector._context["zeek.ssl"]) == ssl.num_rows
    found = pa.concat_tables([*early, detector.observe("zeek.connection", conn), detector.finish()])
    matrix = extract(conn, dns=dns, ssl=ssl)
    assert not np.isnan(matrix[:, FEATURE_NAMES.index("tls_sni")]).all()
    flagged = bundle.probability(matrix) >= bundle.threshold
    ids = np.asarray(conn.column("event.id").to_pylist(), dtype=object)
    assert set(found.column("event.id").to_pylist()) == set(ids[flagged])
    # and without the ssl log the same flows are scored with TLS unknown, not "no TLS"
    bare = extract(conn)
    assert np.isnan(bare[:, FEATURE_NAMES.index("tls_sni")]).all()


def test_held_dns_and_ssl_rows_survive_a_resume(bundle: ModelBundle) -> None:
    """Stopped after every batch of every stream: the same findings as one run.

    The run reads the same batches without stopping (windows close as the batches move
    on, so a long connection logged late can fall in a window already scored, in both).
    """
    streams = _streams(shared(*TLS_CAPTURE))
    one = _detector(bundle, extra=EXPOSED)
    batches = [
        (name, table.slice(start, 700))
        for name, table in streams
        for start in range(0, table.num_rows, 700)
    ]
    whole = pa.concat_tables([*(one.observe(n, t) for n, t in batches), one.finish()])
    assert whole.num_rows
    state, parts, held_context = b"", [], 0
    for name, table in streams:
        for start in range(0, table.num_rows, 700):
            detector = _detector(bundle, extra=EXPOSED)
            detector.restore(state)
            parts.append(detector.observe(name, table.slice(start, 700)))
            state = detector.snapshot()
            held_context = max(held_context, sum(t.num_rows for t in detector._context["zeek.ssl"]))
    last = _detector(bundle, extra=EXPOSED)
    last.restore(state)
    parts.append(last.finish())
    streamed = pa.concat_tables(parts)
    assert held_context > 0  # ssl rows were part of a saved state
    _assert_same_findings(streamed, whole)


def test_a_state_saved_before_dns_and_tls_is_read(bundle: ModelBundle) -> None:
    """The previous release saved a bare Arrow stream of flows with the latest window."""
    events = load_events(shared(IOT, HAKAI)).stream("zeek.connection").slice(0, 500)
    table = project(events).replace_schema_metadata({b"latest": b"5"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    detector = _detector(bundle)
    detector.restore(sink.getvalue().to_pybytes())
    assert detector._latest == {"zeek.connection": 5}
    assert sum(t.num_rows for t in detector._held) == 500


def test_the_detector_names_the_model_as_the_bundle_does() -> None:
    from correlator.ml import bundle as bundle_module
    from correlator.ml import detector as detector_module

    assert detector_module.MODEL_NAME == bundle_module.MODEL_NAME


def test_the_command_line_starts_without_scikit_learn() -> None:
    """``furui --help`` and ``furui incidents list`` do not pay for the model's imports."""
    code = "import sys, correlator.cli; print('sklearn' in sys.modules, 'skops' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
