"""Correlation and decayed scoring: contributions, kill chain, lateral links, retractions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.correlate import CorrelationParams, correlate
from correlator.schema.finding import FINDING_SCHEMA
from correlator.schema.incident import incident_id
from correlator.scoring import combine, decayed_peak

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
HOUR = 3_600_000_000

evidence = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=100),
        st.integers(min_value=0, max_value=48),
        st.integers(min_value=0, max_value=6),
    ),
    min_size=1,
    max_size=12,
)


def _peak(items: list[tuple[float, int, int]]) -> Any:
    scores = [s for s, _, _ in items]
    first = [h * HOUR for _, h, _ in items]
    last = [(h + d) * HOUR for _, h, d in items]
    return decayed_peak(scores, first, last, half_life_seconds=6 * 3600, hold_seconds=3600)


@given(evidence)
def test_peak_is_bounded_and_at_least_each_piece(items: list[tuple[float, int, int]]) -> None:
    peak = _peak(items)
    assert 0 <= peak.risk <= 100
    assert peak.risk >= max(s for s, _, _ in items) - 0.01


@given(evidence, st.tuples(st.floats(0, 100), st.integers(0, 48), st.integers(0, 6)))
def test_more_evidence_never_lowers_the_peak(
    items: list[tuple[float, int, int]], extra: Any
) -> None:
    assert _peak([*items, extra]).risk >= _peak(items).risk - 1e-9


@given(evidence)
def test_contributions_add_up_to_the_risk(items: list[tuple[float, int, int]]) -> None:
    peak = _peak(items)
    assert math.isclose(float(peak.contributions.sum()), peak.risk, abs_tol=0.05)
    assert (peak.contributions >= 0).all()


def test_without_decay_it_is_the_plain_combination() -> None:
    peak = decayed_peak([80, 40, 10], [0, 5 * HOUR, 9 * HOUR], [0, 5 * HOUR, 9 * HOUR], math.inf)
    assert peak.risk == combine([80, 40, 10])


def test_old_evidence_fades() -> None:
    near = decayed_peak([60, 60], [0, HOUR], [0, HOUR], 6 * 3600, 3600).risk
    far = decayed_peak([60, 60], [0, 20 * HOUR], [0, 20 * HOUR], 6 * 3600, 3600).risk
    assert far < near
    assert far >= 60


def _findings(rows: list[dict[str, Any]]) -> pa.Table:
    full = []
    for i, row in enumerate(rows):
        full.append(
            {
                "finding.id": f"f{i}",
                "@timestamp": T0 + timedelta(minutes=row.pop("minute", i)),
                "furui.role": "source",
                "rule.id": row.get("rule.id", f"r{i}"),
                "rule.name": f"rule {row.get('rule.id', i)}",
                "rule.ruleset": "furui",
                "event.risk_score": 40.0,
                "event.id": f"e{i}",
                "event.dataset": "zeek.connection",
                **row,
            }
        )
    return pa.Table.from_pylist(full, schema=FINDING_SCHEMA)


def _by_host(incidents: pa.Table) -> dict[str, dict[str, Any]]:
    return {i["host.ip"]: i for i in incidents.to_pylist()}


def test_lateral_spread_links_the_incidents_of_both_hosts() -> None:
    rows = [
        {"host.ip": "10.0.0.1", "furui.peer_ip": "10.0.0.2", "rule.id": "scan"},
        {
            "host.ip": "10.0.0.2",
            "furui.peer_ip": "10.0.0.1",
            "furui.role": "target",
            "rule.id": "scan",
        },
        {"host.ip": "10.0.0.2", "furui.peer_ip": "198.51.100.1", "rule.id": "beacon"},
        {"host.ip": "10.0.0.3", "furui.peer_ip": "10.0.0.9", "rule.id": "scan"},  # peer has none
    ]
    incidents = _by_host(correlate(_findings(rows), CorrelationParams()))
    window = datetime(2024, 5, 1, tzinfo=UTC)
    assert incidents["10.0.0.1"]["furui.lateral.targets"] == ["10.0.0.2"]
    assert incidents["10.0.0.2"]["furui.lateral.sources"] == ["10.0.0.1"]
    assert incidents["10.0.0.1"]["furui.related_incidents"] == [incident_id("10.0.0.2", window)]
    assert incidents["10.0.0.3"]["furui.lateral.targets"] == []


def test_contribution_breakdown_and_kill_chain_stage() -> None:
    rows = [
        {
            "host.ip": "10.0.0.1",
            "rule.id": "scan",
            "threat.tactic.id": ["TA0007"],
            "event.risk_score": 40.0,
        },
        {
            "host.ip": "10.0.0.1",
            "rule.id": "c2",
            "threat.tactic.id": ["TA0011"],
            "event.risk_score": 70.0,
            "furui.confidence": 0.5,
            "furui.events": 12,
            "furui.event_ids": ["a", "b"],
        },
    ]
    incident = correlate(_findings(rows), CorrelationParams()).to_pylist()[0]
    items = {e["rule"]["id"]: e for e in incident["furui.evidence"]}
    assert items["c2"]["score"] == 35.0  # weight 70 × confidence 0.5
    assert items["c2"]["count"] == 12
    assert items["c2"]["references"]["event"]["id"] == ["a", "b", "e1"]
    assert sum(e["contribution"] for e in items.values()) == pytest.approx(
        incident["event.risk_score"], abs=0.05
    )
    # the furthest contributing tactic in the Enterprise kill chain: C2 comes after discovery
    assert incident["furui.kill_chain.stage"] == "command-and-control"
    assert incident["threat.tactic.id"] == ["TA0007", "TA0011"]


def test_retracted_findings_are_ignored_and_order_does_not_matter() -> None:
    rows: list[dict[str, Any]] = [
        {"host.ip": "10.0.0.1", "rule.id": "a"},
        {"host.ip": "10.0.0.1", "rule.id": "b", "event.risk_score": 0.0},
        {"host.ip": "10.0.0.4", "rule.id": "gone", "event.risk_score": 0.0},
    ]
    table = _findings(rows)
    incidents = correlate(table, CorrelationParams())
    assert incidents.column("host.ip").to_pylist() == ["10.0.0.1"]
    assert [e["rule"]["id"] for e in incidents.column("furui.evidence")[0].as_py()] == ["a"]
    backwards = correlate(table.take(pa.array([2, 1, 0])), CorrelationParams())
    assert backwards.to_pylist() == incidents.to_pylist()
