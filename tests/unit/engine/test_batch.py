"""Predicates over a batch: every operator, lists, missing fields, negation, caching."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from correlator.engine.batch import Batch, check_regex
from correlator.engine.spec import AllOf, AnyOf, Condition, Not, Range
from correlator.normalise.addresses import Networks
from tests.unit.engine.helpers import events

INTERNAL = Networks.of(["10.0.0.0/8", "fc00::/7"])


@pytest.fixture
def batch() -> Batch:
    table = events(
        [
            {
                "url.domain": "1.2.3.4",
                "destination.port": 80,
                "tags": ["a", "b"],
                "ok": True,
                "user_agent.original": "",
            },
            {
                "url.domain": "Example.COM",
                "destination.port": 443,
                "tags": [],
                "ok": False,
                "source.ip": "fd00::1",
                "user_agent.original": "curl/8",
            },
            {
                "url.domain": None,
                "destination.port": 8883,
                "tags": None,
                "ok": None,
                "source.ip": "198.51.100.7",
                "user_agent.original": None,
            },
        ]
    )
    return Batch("zeek.http", table, INTERNAL)


def _mask(batch: Batch, **kwargs: object) -> list[bool]:
    return [bool(x) for x in batch.mask(Condition.model_validate(kwargs))]


def test_operators(batch: Batch) -> None:
    assert _mask(batch, field="destination.port", op="eq", value=443) == [False, True, False]
    assert _mask(batch, field="destination.port", op="in", value=[80, 8883]) == [True, False, True]
    assert _mask(batch, field="url.domain", op="eq", value="example.com", ignore_case=True) == [
        False,
        True,
        False,
    ]
    assert _mask(batch, field="url.domain", op="regex", value=r"^\d+(\.\d+){3}$") == [
        True,
        False,
        False,
    ]
    assert _mask(batch, field="url.domain", op="contains", value=["xam", "2.3"]) == [
        True,
        True,
        False,
    ]
    assert _mask(batch, field="destination.port", op="range", value={"gte": 443, "lt": 9000}) == [
        False,
        True,
        True,
    ]
    assert _mask(batch, field="source.ip", op="cidr", value=["fc00::/7", "10.0.0.0/8"]) == [
        True,
        True,
        False,
    ]
    assert _mask(batch, field="ok", op="eq", value=False) == [False, True, False]


def test_exists_treats_empty_text_and_lists_as_missing(batch: Batch) -> None:
    assert _mask(batch, field="user_agent.original", op="exists") == [False, True, False]
    assert _mask(batch, field="tags", op="exists") == [True, False, False]
    assert _mask(batch, field="no.such.field", op="exists") == [False, False, False]


def test_list_fields_match_if_any_element_does(batch: Batch) -> None:
    assert _mask(batch, field="tags", op="eq", value="b") == [True, False, False]


def test_several_fields_match_if_any_does(batch: Batch) -> None:
    assert _mask(
        batch, field=["url.domain", "user_agent.original"], op="contains", value="curl"
    ) == [
        False,
        True,
        False,
    ]


def test_not_any_all(batch: Batch) -> None:
    http = Condition(field="destination.port", op="eq", value=80)
    tls = Condition(field="destination.port", op="eq", value=443)
    assert batch.mask(Not.model_validate({"not": http})).tolist() == [False, True, True]
    assert batch.mask(AnyOf(any=(http, tls))).tolist() == [True, True, False]
    assert batch.mask(AllOf(all=(http, tls))).tolist() == [False, False, False]
    # a missing value never matches, so its negation does
    missing = Condition(field="url.domain", op="eq", value="x")
    assert batch.mask(Not.model_validate({"not": missing})).tolist() == [True, True, True]


def test_masks_are_computed_once_per_batch(batch: Batch) -> None:
    first = batch.mask(Condition(field="destination.port", op="eq", value=80))
    again = batch.mask(Condition(field="destination.port", op="eq", value=80))
    assert first is again


def test_internal_ends_follow_direction_or_networks(batch: Batch) -> None:
    assert batch.internal("source").tolist() == [True, True, False]
    table = batch.table.set_column(
        batch.table.schema.get_field_index("network.direction"),
        "network.direction",
        pa.array(["inbound", "outbound", "internal"]),
    )
    directed = Batch("zeek.http", table, INTERNAL)
    assert directed.internal("source").tolist() == [False, True, True]
    assert directed.internal("destination").tolist() == [True, False, True]


def test_range_needs_a_bound_and_ops_check_values() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Range()
    with pytest.raises(ValueError, match="needs one value"):
        Condition(field="x", op="eq", value=("a", "b"))
    with pytest.raises(ValueError, match="takes no value"):
        Condition(field="x", op="exists", value="y")


def test_regexes_are_checked_with_the_engine_that_runs_them() -> None:
    assert check_regex(r"\x{202E}") is None  # RE2 syntax, not Python's
    assert check_regex(r"(?<=a)b") is not None  # look-behind: RE2 has none
    assert not np.any([])
