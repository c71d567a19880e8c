"""Idempotence and crash recovery of the embedded pipeline, on real logs."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from correlator.engine.signals import SuricataAlerts
from correlator.pipeline import analyze, build_detectors
from correlator.settings import Settings
from correlator.state import Store
from tests.conftest import REPO, Runner, shared

EXAMPLES = REPO / "examples"


def _state(db: Path) -> tuple[int, int, list[tuple[str, float]]]:
    with Store.open(db) as store:
        distinct = sum(
            int(
                store.query(f'SELECT count(DISTINCT "event.id") AS n FROM {t}')
                .column("n")[0]
                .as_py()
            )
            for t in store.event_tables()
        )
        incidents = store.incidents()
        ranked = (
            sorted(
                zip(
                    incidents.column("event.id").to_pylist(),
                    incidents.column("event.risk_score").to_pylist(),
                    strict=True,
                )
            )
            if incidents.num_rows
            else []
        )
        return store.event_count(), distinct, ranked


def test_analysing_twice_adds_nothing(run: Runner, settings: Settings) -> None:
    first = run([EXAMPLES])
    assert first.events > 100_000
    assert {f.status for f in first.files} == {"read"}
    before = _state(settings.store.path)
    second = run([EXAMPLES])
    assert second.events == 0
    assert {f.status for f in second.files} == {"unchanged"}
    assert _state(settings.store.path) == before
    assert before[0] == before[1] == first.events


def test_small_blocks_store_the_same_as_one_block(
    run: Runner, settings: Settings, tmp_path: Path
) -> None:
    path = shared("zeek-wrccdc2018", "zeek-default", "notice.log.gz")
    run([path], block_bytes=4096)
    small = _state(settings.store.path)
    other = settings.store.model_copy(update={"path": tmp_path / "other.duckdb"})
    with Store.open(other.path) as store:
        analyze([path], settings.model_copy(update={"store": other}), store)
    assert _state(other.path) == small


class _CrashError(RuntimeError):
    pass


class _CrashingAlerts:
    """The real alert detector, failing on its n-th batch like a process dying mid-run."""

    def __init__(self, inner: SuricataAlerts, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.ruleset, self.streams = inner.ruleset, inner.streams

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        self.calls += 1
        if self.calls == self.fail_at:
            raise _CrashError
        return self.inner.observe(stream, events)

    def finish(self) -> pa.Table:
        return self.inner.finish()

    def snapshot(self) -> bytes:
        return self.inner.snapshot()

    def restore(self, state: bytes) -> None:
        self.inner.restore(state)


def test_crash_mid_file_then_resume_gives_the_clean_result(
    settings: Settings, tmp_path: Path
) -> None:
    eve = shared("suricata-eve-stratosphere-2021", "eve.json")
    small = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(update={"block_bytes": 65536, "flush_rows": 1})
        }
    )
    clean = small.model_copy(
        update={"store": small.store.model_copy(update={"path": tmp_path / "clean.duckdb"})}
    )
    with Store.open(clean.store.path) as store:
        analyze([eve], clean, store)
    detectors = build_detectors(small)
    alerts = next(d for d in detectors if isinstance(d, SuricataAlerts))
    crashing = [_CrashingAlerts(alerts, fail_at=10), *(d for d in detectors if d is not alerts)]
    with Store.open(small.store.path) as store, pytest.raises(_CrashError):
        analyze([eve], small, store, detectors=crashing)
    partial = _state(small.store.path)
    assert 0 < partial[0] < _state(clean.store.path)[0]
    with Store.open(small.store.path) as store:
        resumed = analyze([eve], small, store)
    assert [f.status for f in resumed.files] == ["resumed"]
    assert _state(small.store.path) == _state(clean.store.path)


def test_killed_process_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("dns.log.gz", "ssl.log.gz"):
        shutil.copy(shared("zeek-wrccdc2018", "zeek-default", name), logs / name)
    env = {**os.environ, "FURUI_INGEST__BLOCK_BYTES": "262144", "FURUI_INGEST__FLUSH_ROWS": "5000"}
    command = [
        sys.executable,
        "-m",
        "correlator",
        "analyze",
        str(logs),
        "--no-progress",
        "--output",
        str(tmp_path / "out.ndjson"),
    ]
    clean_db, crash_db = tmp_path / "clean.duckdb", tmp_path / "crash.duckdb"
    subprocess.run([*command, "--db", str(clean_db)], env=env, check=True, capture_output=True)
    victim = subprocess.Popen(
        [*command, "--db", str(crash_db), "-vv"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert victim.stderr is not None
    committed = 0
    for line in victim.stderr:
        committed += "committed up to line" in line
        if committed == 5:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    partial = _state(crash_db)
    assert 0 < partial[0] < _state(clean_db)[0]
    subprocess.run([*command, "--db", str(crash_db)], env=env, check=True, capture_output=True)
    assert _state(crash_db) == _state(clean_db)


def test_a_growing_file_is_read_from_where_it_stopped(
    run: Runner, settings: Settings, tmp_path: Path
) -> None:
    source = shared("zeek-wrccdc2018", "zeek-default", "rdp.log.gz")
    with gzip.open(source, "rt") as handle:
        lines = handle.read().splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#close")]
    live = tmp_path / "rdp.log"
    live.write_text("".join(body[:1000]))
    first = run([live])
    live.write_text("".join(body))  # the sensor appended the rest
    second = run([live])
    assert second.files[0].status == "resumed"
    data_lines = sum(1 for line in body if not line.startswith("#"))
    assert first.events + second.events == data_lines
    count, distinct, _ = _state(settings.store.path)
    assert count == distinct == data_lines


def test_a_tiny_growing_file_keeps_its_identity(
    run: Runner, settings: Settings, tmp_path: Path
) -> None:
    source = shared("zeek-wrccdc2018", "zeek-json", "notice.json.gz")
    with gzip.open(source, "rt") as handle:
        lines = handle.read().splitlines(keepends=True)
    live = tmp_path / "notice.log"
    live.write_text(lines[0])  # shorter than the identity prefix
    assert len(lines[0].encode()) < 1024
    run([live])
    live.write_text("".join(lines[:50]))
    second = run([live])
    assert second.files[0].status == "resumed"
    count, distinct, _ = _state(settings.store.path)
    assert count == distinct == 50
