"""The engine as a detector: streams, findings columns, checkpoints across rule changes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from correlator.engine.detector import RuleEngine
from correlator.engine.fixtures import canonical, engine_for
from correlator.engine.loader import load_rule
from correlator.schema.finding import FINDING_SCHEMA
from tests.unit.engine.helpers import events, rule

SCAN = """where = []
group_by = ["destination.ip"]
distinct_field = "destination.port"
min_distinct = 5
window = "1m"
"""


def test_findings_carry_rule_provenance_and_explanation(tmp_path: Path) -> None:
    scan = rule(
        tmp_path, "threshold", SCAN, extra='message = "{distinct} ports of {destination.ip}"\n'
    )
    engine = engine_for([scan])
    assert engine.streams == frozenset({"zeek.connection"})
    engine.observe("zeek.connection", events([{"t": i, "destination.port": i} for i in range(6)]))
    found = engine.finish()
    assert found.schema == FINDING_SCHEMA
    row = found.to_pylist()[0]
    assert row["rule.id"] == scan.id
    assert row["rule.version"] == "1"
    assert row["rule.ruleset"] == "furui"
    assert row["threat.technique.id"] == ["T1071"]
    assert row["threat.tactic.id"] == ["TA0011"]
    assert row["message"] == "6 ports of 203.0.113.9"
    assert row["furui.events"] == 6
    assert row["furui.event_ids"] == [f"e{i:05d}" for i in range(6)]
    assert row["event.id"] == "e00000"
    assert row["finding.id"].startswith(f"furui|{scan.id}|")


def test_snapshot_keeps_state_of_unchanged_rules_only(tmp_path: Path) -> None:
    scan = rule(tmp_path, "threshold", SCAN)
    half = events([{"t": i, "destination.port": i} for i in range(3)])
    rest = events([{"t": 3 + i, "destination.port": 3 + i, "id": f"r{i}"} for i in range(3)])
    first = engine_for([scan])
    first.observe("zeek.connection", half)
    state = first.snapshot()
    same = engine_for([scan])
    same.restore(state)
    same.observe("zeek.connection", rest)
    assert [f["events"] for f in canonical(same.finish())] == [6]
    scan.path.write_text(scan.path.read_text().replace("min_distinct = 5", "min_distinct = 4"))
    changed = engine_for([load_rule(scan.path)])
    changed.restore(state)  # its rule changed: the old counts no longer apply
    changed.observe("zeek.connection", rest)
    assert canonical(changed.finish()) == []


def test_state_from_another_version_is_ignored(tmp_path: Path) -> None:
    engine = engine_for([rule(tmp_path, "threshold", SCAN)])
    engine.restore(b"something else")
    assert engine.finish().num_rows == 0


def test_an_engine_without_rules_reads_nothing() -> None:
    engine = engine_for([])
    assert isinstance(engine, RuleEngine)
    assert engine.streams == frozenset()
    assert engine.observe("zeek.connection", pa.table({"x": [1]})).num_rows == 0
    assert engine.snapshot().startswith(b"FURUI-RULE-STATE")


def test_a_snapshot_reencodes_only_the_tables_that_changed(tmp_path: Path) -> None:
    scan = rule(tmp_path, "threshold", SCAN)
    lookups = rule(tmp_path, "threshold", SCAN, stream="zeek.dns")
    engine = engine_for([scan, lookups])
    engine.observe("zeek.connection", events([{"t": i, "destination.port": i} for i in range(3)]))
    engine.observe(
        "zeek.dns", events([{"t": i, "destination.port": i} for i in range(3)], "zeek.dns")
    )
    first = engine.snapshot()
    assert engine.snapshot() == first  # nothing changed: the same bytes, all from the cache
    # a run of one stream changes the tables of the rules reading it, not the others'
    engine.observe("zeek.connection", events([{"t": 9, "destination.port": 9, "id": "late"}]))
    cached = engine.snapshot()
    assert cached != first
    engine._encoded.clear()  # every table encoded afresh
    assert engine.snapshot() == cached
