"""``threshold``: grouping, windows, counts, distinct counts, attribution, stragglers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from correlator.engine.fixtures import canonical, engine_for
from correlator.engine.kinds.base import Limits
from tests.unit.engine.helpers import events, findings, rule

SCAN = """where = []
group_by = ["destination.ip"]
distinct_field = "destination.port"
min_distinct = 5
window = "1m"
"""


def test_threshold_counts_distinct_values_per_group_and_window(tmp_path: Path) -> None:
    scan = rule(tmp_path, "threshold", SCAN)
    hit = [{"t": i, "destination.port": 1000 + i} for i in range(5)]
    near = [
        {"t": 60 + i, "destination.port": 2000 + i, "destination.ip": "203.0.113.10"}
        for i in range(4)
    ]
    repeated = [
        {"t": 120 + i, "destination.port": 22, "destination.ip": "203.0.113.11"} for i in range(9)
    ]
    found = findings([scan], {"zeek.connection": events(hit + near + repeated)})
    assert [(f["peer"], f["events"]) for f in found] == [("203.0.113.9", 5)]


def test_a_burst_across_a_window_boundary_counts_in_two_windows(tmp_path: Path) -> None:
    scan = rule(tmp_path, "threshold", SCAN)
    rows = [{"t": 57 + i, "destination.port": 1000 + i} for i in range(6)]  # 3 + 3 ports
    assert findings([scan], {"zeek.connection": events(rows)}) == []


def test_distinct_count_stops_at_the_cap(tmp_path: Path) -> None:
    scan = rule(tmp_path, "threshold", SCAN, extra='message = "{distinct} ports"\n')
    rows = [{"t": i * 0.1, "destination.port": i} for i in range(30)]
    found = findings([scan], {"zeek.connection": events(rows)}, limits=Limits(max_distinct=10))
    assert found[0]["message"] == "10+ ports"


def test_external_hosts_get_no_findings_and_inbound_targets_count_less(tmp_path: Path) -> None:
    both = rule(tmp_path, "match", 'where = []\nentity = "both"\ngroup_by = ["destination.port"]')
    rows: list[dict[str, Any]] = [
        {"source.ip": "198.51.100.1", "destination.ip": "10.0.0.5"},  # inbound: target only
        {"source.ip": "10.0.0.7", "destination.ip": "10.0.0.5", "t": 5},  # internal: both
    ]
    found = findings([both], {"zeek.connection": events(rows)})
    scores = sorted((f["host"], f["role"], f["events"], f["risk_score"]) for f in found)
    # the target's group holds an attack from inside: it counts in full
    assert scores == [("10.0.0.5", "target", 2, 40.0), ("10.0.0.7", "source", 1, 40.0)]
    inbound = findings([both], {"zeek.connection": events(rows[:1])})
    assert [(f["host"], f["risk_score"]) for f in inbound] == [("10.0.0.5", 20.0)]  # factor 0.5


def test_a_straggler_after_its_window_closed_is_dropped_not_a_partial_finding(
    tmp_path: Path,
) -> None:
    scan = rule(tmp_path, "threshold", SCAN)
    engine = engine_for([scan], limits=Limits(lateness_seconds=60))
    early = events([{"t": i, "destination.port": 1000 + i} for i in range(5)])
    closed = canonical(engine.observe("zeek.connection", early))
    assert closed == []
    later = events([{"t": 600, "destination.port": 9}])  # closes the first window
    emitted = canonical(engine.observe("zeek.connection", later))
    assert [f["events"] for f in emitted] == [5]
    straggler = events([{"t": 3, "destination.port": 7, "id": "late"}])
    assert canonical(engine.observe("zeek.connection", straggler)) == []
    assert canonical(engine.finish()) == []


def test_a_sum_threshold_adds_a_field_over_the_group(tmp_path: Path) -> None:
    upload = rule(
        tmp_path,
        "threshold",
        'group_by = ["destination.ip"]\nsum_field = "source.bytes"\nmin_sum = 1000\nwindow = "1h"',
        extra='message = "{sum:.0f} bytes in {count}"\n',
    )
    rows: list[dict[str, Any]] = [
        {"t": 0, "source.bytes": 600},
        {"t": 10, "source.bytes": None},  # counts as nothing
        {"t": 20, "source.bytes": 400},
        {"t": 0, "source.bytes": 999, "destination.ip": "203.0.113.10"},  # just short
    ]
    found = findings([upload], {"zeek.connection": events(rows)}, batch_rows=1)
    assert [(f["peer"], f["message"]) for f in found] == [("203.0.113.9", "1000 bytes in 3")]
