"""The vectorised Community ID against the reference implementation (``communityid``)."""

from __future__ import annotations

import communityid
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from correlator.normalise.community_id import community_id
from correlator.testing import load_events
from tests.conftest import shared

_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}


def _reference(
    saddr: str, daddr: str, sport: int | None, dport: int | None, proto: str
) -> str | None:
    number = _PROTOS.get(proto) if not proto.isdigit() else int(proto)
    if number == 1 and ":" in saddr:
        number = 58
    if number is None:
        return None
    try:
        flow = communityid.FlowTuple(number, saddr, daddr, sport, dport)
    except communityid.error.FlowTupleError:
        return None
    return str(communityid.CommunityID().calc(flow))


def _compare(rows: list[tuple[str, str, int | None, int | None, str]]) -> None:
    saddr, daddr, sport, dport, proto = (list(c) for c in zip(*rows, strict=True))
    got = community_id(
        pa.array(saddr),
        pa.array(daddr),
        pa.array(sport, pa.int64()),
        pa.array(dport, pa.int64()),
        pa.array(proto),
    ).to_pylist()
    expected = [_reference(*row) for row in rows]
    assert got == expected


@pytest.mark.parametrize(
    "row",
    [
        ("10.0.0.1", "10.0.0.2", 1234, 80, "tcp"),
        ("10.0.0.2", "10.0.0.1", 80, 1234, "tcp"),  # same flow, other direction
        ("1.2.3.4", "1.2.3.4", 5, 3, "udp"),  # equal addresses: ordered by port
        ("192.168.1.1", "8.8.8.8", 8, 0, "icmp"),  # echo request
        ("8.8.8.8", "192.168.1.1", 0, 0, "icmp"),  # echo reply: same id as the request
        ("192.168.1.1", "8.8.8.8", 3, 1, "icmp"),  # unreachable: one-way, no pairing
        ("fe80::1", "fe80::2", 135, 0, "icmp"),  # Zeek logs ICMPv6 as icmp
        ("2001:db8::1", "2001:db8::2", 53, 5353, "udp"),
        ("10.0.0.1", "10.0.0.2", None, None, "47"),  # GRE: no ports
        ("10.1.1.1", "10.1.1.2", 1, 2, "sctp"),
    ],
)
def test_matches_reference_on_spec_cases(row: tuple[str, str, int | None, int | None, str]) -> None:
    _compare([row])


def test_invalid_tuples_give_null() -> None:
    ids = community_id(
        pa.array(["not-an-ip", "10.0.0.1", "10.0.0.1"]),
        pa.array(["10.0.0.2", "2001:db8::1", None]),
        pa.array([1, 1, 1]),
        pa.array([2, 2, 2]),
        pa.array(["tcp"] * 3),
    )
    assert ids.to_pylist() == [None, None, None]


def test_matches_reference_on_real_flows() -> None:
    conn = load_events(
        shared("stratosphere-ctu-zeek", "011-zeek-mixed", "data", "conn.log.labeled")
    ).stream("zeek.connection")
    rows = list(
        zip(
            *(
                conn.column(c).to_pylist()
                for c in (
                    "source.ip",
                    "destination.ip",
                    "source.port",
                    "destination.port",
                    "network.transport",
                )
            ),
            strict=True,
        )
    )
    assert len(rows) > 9000
    _compare(rows)
    # and normalisation filled the column with the same ids
    computed = conn.column("network.community_id").to_pylist()
    assert computed == [_reference(*row) for row in rows]


def test_suricata_logged_id_is_kept() -> None:
    # Elastic's sample eve alert carries the sensor's own community_id
    events = load_events(shared("suricata-eve-stratosphere-2021", "eve.json"))
    flows = events.stream("suricata.eve.flow")
    assert pc.all(pc.starts_with(flows.column("network.community_id"), "1:")).as_py()
