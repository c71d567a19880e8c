"""Computed fields: registered domain, subdomain and its entropy, the share of bytes sent."""

from __future__ import annotations

import pyarrow as pa
import pytest

from correlator.engine.batch import Batch
from correlator.engine.fields import is_known_field, shannon_entropy
from correlator.normalise.addresses import Networks
from tests.unit.engine.helpers import events


@pytest.fixture
def dns() -> Batch:
    names = ["a.b.example.co.uk", "Example.COM", "www.example.com.", None, "1.2.3.4.in-addr.arpa"]
    table = events([{"dns.question.name": n} for n in names], "zeek.dns")
    return Batch("zeek.dns", table, Networks.of(["10.0.0.0/8"]))


def test_subdomain_is_what_lies_left_of_the_registered_domain(dns: Batch) -> None:
    assert dns.column("furui.dns.registered_domain").to_pylist() == [
        "example.co.uk",
        "example.com",
        "example.com",
        None,
        "in-addr.arpa",
    ]
    assert dns.column("furui.dns.subdomain").to_pylist() == ["a.b", "", "www", None, "1.2.3.4"]
    assert dns.column("furui.dns.subdomain_length").to_pylist() == [3, 0, 3, None, 7]


def test_subdomain_entropy_ignores_the_dots(dns: Batch) -> None:
    # "a.b" is "ab": two symbols, one bit each; "www" one symbol; "1.2.3.4" four, two bits
    assert dns.column("furui.dns.subdomain_entropy").to_pylist() == [1.0, 0.0, 0.0, None, 2.0]
    assert shannon_entropy(pa.array(["0123456789abcdef"])).to_pylist() == [4.0]


def test_source_bytes_ratio_is_the_originators_share() -> None:
    table = events(
        [
            {"source.bytes": 900, "destination.bytes": 100},
            {"source.bytes": 0, "destination.bytes": 0},  # no bytes: no direction
            {"source.bytes": 5, "destination.bytes": None},  # unknown total
        ]
    )
    batch = Batch("zeek.connection", table, Networks.of(["10.0.0.0/8"]))
    assert batch.column("furui.network.source_bytes_ratio").to_pylist() == [0.9, None, None]


def test_computed_fields_exist_where_their_inputs_do() -> None:
    assert is_known_field("zeek.dns", "furui.dns.subdomain_entropy")
    assert is_known_field("zeek.connection", "furui.network.source_bytes_ratio")
    assert not is_known_field("zeek.http", "furui.dns.subdomain")
