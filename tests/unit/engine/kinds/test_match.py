"""``match``: repeated evidence is one finding per host, group and window, counted."""

from __future__ import annotations

from pathlib import Path

from tests.unit.engine.helpers import events, findings, rule


def test_match_counts_repeats_as_one_finding_per_window(tmp_path: Path) -> None:
    match = rule(tmp_path, "match", 'where = []\ngroup_by = ["destination.ip"]\nwindow = "1h"')
    rows = [{"t": t} for t in (0, 10, 20)] + [{"t": 3600 + 5}]
    found = findings([match], {"zeek.connection": events(rows)})
    assert [f["events"] for f in found] == [3, 1]
    assert found[0]["message"].startswith("Test rule: 3 matching events from 10.0.0.1")
