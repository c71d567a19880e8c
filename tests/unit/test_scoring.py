"""Scoring: bounded, monotone, led by the strongest evidence, not inflated by repetition."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from correlator.schema.incident import severity
from correlator.scoring import combine, combine_groups

scores = st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=50)


@given(scores)
def test_bounded_and_at_least_the_strongest(values: list[float]) -> None:
    risk = combine(values)
    assert 0 <= risk <= 100
    assert risk >= max(values) - 0.01


@given(scores, st.floats(min_value=0, max_value=100))
def test_more_evidence_never_lowers_risk(values: list[float], extra: float) -> None:
    assert combine([*values, extra]) >= combine(values) - 1e-9


@given(scores, st.integers(min_value=0, max_value=49), st.floats(min_value=0, max_value=50))
def test_stronger_evidence_never_lowers_risk(values: list[float], index: int, bump: float) -> None:
    index %= len(values)
    stronger = list(values)
    stronger[index] = min(100.0, stronger[index] + bump)
    assert combine(stronger) >= combine(values) - 1e-9


def test_many_weak_signals_stay_below_one_strong_signal() -> None:
    weak = combine([20.0] * 100)
    assert severity(weak) == "medium"
    assert weak < combine([80.0])
    assert severity(combine([80.0])) == "critical"


def test_groups_match_single_computation() -> None:
    groups = [[90.0, 40.0, 10.0], [30.0], [70.0, 70.0]]
    flat = np.array([v for g in groups for v in g])
    offsets = np.array([0, 3, 4])
    assert list(combine_groups(flat, offsets)) == [combine(g) for g in groups]


def test_severity_bands() -> None:
    assert [severity(s) for s in (0, 21.9, 22, 47.9, 48, 73.9, 74, 100)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]
