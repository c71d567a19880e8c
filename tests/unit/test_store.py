"""The embedded store: schema evolution, status-preserving upserts, versioning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from correlator import state_files
from correlator.commit import Commit
from correlator.engine.base import empty_findings
from correlator.errors import StoreError
from correlator.sources.base import LogFormat
from correlator.sources.files import FileIdentity, LogFile
from correlator.sources.reader import Position
from correlator.state import Store


def _commit(
    store: Store, table: pa.Table, line: int, states: dict[str, bytes] | None = None
) -> None:
    log = LogFile(Path("x.log"), LogFormat.ZEEK_JSON, "x", FileIdentity("k", 10, b"0123456789"))
    commit = Commit()
    commit.add(
        key="k",
        log=log,
        position=Position(line, line),
        events={"zeek.x": table},
        findings=empty_findings(),
        rejects=[],
        skipped=0,
    )
    commit.detector_states = states or {}
    store.commit(commit, run_id="r")


def test_new_columns_are_added_and_conflicting_types_become_text(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        _commit(store, pa.table({"event.id": ["a"], "zeek.x.n": [1]}), 1)
        _commit(store, pa.table({"event.id": ["b"], "zeek.x.n": ["two"], "zeek.x.new": [True]}), 2)
        _commit(
            store,
            pa.table({"event.id": ["c"], "zeek.x.n": pa.nulls(1), "zeek.x.only_null": pa.nulls(1)}),
            3,
        )
        rows = store.query('SELECT * FROM events_zeek_x ORDER BY "event.id"').to_pylist()
    assert [r["zeek.x.n"] for r in rows] == ["1", "two", None]
    assert [r["zeek.x.new"] for r in rows] == [None, True, None]
    assert "zeek.x.only_null" not in rows[0]


def test_integer_widths_widen_to_the_wider_number(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        _commit(store, pa.table({"event.id": ["a"], "v": pa.array([1], pa.int32())}), 1)
        _commit(store, pa.table({"event.id": ["b"], "v": pa.array([2.5], pa.float64())}), 2)
        values = store.query('SELECT v FROM events_zeek_x ORDER BY "event.id"').column("v")
    assert values.to_pylist() == [1.0, 2.5]


def _incident(risk: float) -> pa.Table:
    return pa.table(
        {
            "event.id": ["i1"],
            "event.risk_score": [risk],
            "host.ip": ["10.0.0.1"],
            "@timestamp": pa.array([0], pa.timestamp("us", tz="UTC")),
        }
    )


def test_analyst_status_survives_updates(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        store.upsert_incidents(_incident(40.0))
        assert store.set_status("i1", "acknowledged")
        assert not store.set_status("nope", "closed")
        store.upsert_incidents(_incident(80.0))
        row = store.incidents().to_pylist()
    assert len(row) == 1
    assert row[0]["event.risk_score"] == 80.0
    assert row[0]["furui.status"] == "acknowledged"


def test_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.query("UPDATE furui_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999"):
        Store.open(path)


def test_store_in_use_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=re.escape(path.name)):
            Store.open(path)
    finally:
        holder.communicate("")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        Store.open(path)


def _commit_states(store: Store, states: dict[str, bytes], line: int) -> None:
    _commit(store, pa.table({"event.id": [f"e{line}"]}), line, states)


def test_large_detector_states_live_in_files_beside_the_store(tmp_path: Path) -> None:
    """Small states stay inline; large ones are files, the latest only, verified on load."""
    path = tmp_path / "s.duckdb"
    big_one = bytes(range(256)) * (state_files.INLINE_BYTES // 256 + 1)
    big_two = big_one[::-1]
    with Store.open(path) as store:
        _commit_states(store, {"small": b"tiny", "furui": big_one}, 1)
        _commit_states(store, {"small": b"tiny", "furui": big_two}, 2)
        assert store.detector_state("small") == b"tiny"
        assert store.detector_state("furui") == big_two
    folder = state_files.folder_of(path)
    assert [p.name.startswith("furui-") for p in folder.iterdir()] == [True]  # one file left
    with Store.open(path) as store:  # a new run reads it back
        assert store.detector_state("furui") == big_two
    state = next(folder.iterdir())
    state.write_bytes(big_one)  # altered on disk
    with Store.open(path) as store, pytest.raises(StoreError, match="altered"):
        store.detector_state("furui")
    state.unlink()
    with Store.open(path) as store, pytest.raises(StoreError, match="missing"):
        store.detector_state("furui")


def test_a_failed_commit_keeps_the_previous_state_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new file is written before the transaction; failing, the old one still holds."""
    path = tmp_path / "s.duckdb"
    big = bytes(range(256)) * (state_files.INLINE_BYTES // 256 + 1)
    with Store.open(path) as store:
        _commit_states(store, {"furui": big}, 1)

        def disk_full(*_: object) -> None:
            raise duckdb.IOException("No space left on device")

        monkeypatch.setattr(store._tables, "append", disk_full)
        with pytest.raises(StoreError, match="No space left"):
            _commit_states(store, {"furui": big[::-1]}, 2)
        monkeypatch.undo()
        assert store.detector_state("furui") == big
        _commit_states(store, {"furui": big}, 2)  # the next commit prunes the orphan
    assert len(list(state_files.folder_of(path).iterdir())) == 1
