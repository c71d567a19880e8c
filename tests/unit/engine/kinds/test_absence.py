"""``absence``: companions before and after, list keys, required context, late companions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from correlator.engine.batch import Batch
from correlator.engine.detector import RuleEngine
from correlator.engine.fixtures import canonical, engine_for, run
from correlator.engine.kinds import absence
from correlator.engine.kinds.base import Limits
from correlator.engine.kinds.companions import has_companion, key_rows, thin
from correlator.normalise.addresses import Networks
from tests.unit.engine.helpers import events, findings, rule

#: Connections to an address no lookup answered with, from hosts whose lookups are seen.
UNRESOLVED = """stream = "zeek.connection"
where = [{ field = "destination.port", op = "eq", value = 443 }]
group_by = ["destination.ip"]
min_count = 2
window = "1h"

[[rule.params.unless]]
stream = "zeek.dns"
on = ["destination.ip"]
by = ["dns.resolved_ip"]
before = "10m"
after = "5s"

[[rule.params.requires]]
stream = "zeek.dns"
on = ["source.ip"]
by = ["source.ip"]
before = "30m"
after = "30m"
"""

MESSAGE = 'message = "{count} connections to {destination.ip}"\n'


def _lookup(t: float, *addresses: str, host: str = "10.0.0.1") -> dict[str, object]:
    return {
        "t": t,
        "id": f"d{t}",
        "source.ip": host,
        "destination.ip": "10.0.0.53",
        "destination.port": 53,
        "dns.resolved_ip": list(addresses),
    }


def test_connections_without_an_answer_naming_their_address_count(tmp_path: Path) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    conns = events(
        [
            {"t": 100, "destination.ip": "203.0.113.9", "id": "c1"},  # never resolved
            {"t": 160, "destination.ip": "203.0.113.9", "id": "c2"},
            {"t": 100, "destination.ip": "198.51.100.7", "id": "c3"},  # resolved before
            {"t": 130, "destination.ip": "198.51.100.7", "id": "c4"},
            {"t": 100, "destination.ip": "192.0.2.4", "id": "c5"},  # resolved 3 s after: ok
            {"t": 200, "destination.ip": "192.0.2.4", "id": "c6"},  # ... but not 103 s after
        ]
    )
    dns = events([_lookup(50, "192.0.2.80", "198.51.100.7"), _lookup(103, "192.0.2.4")], "zeek.dns")
    found = findings([unresolved], {"zeek.connection": conns, "zeek.dns": dns})
    assert [(f["peer"], f["message"]) for f in found] == [
        ("203.0.113.9", "2 connections to 203.0.113.9")
    ]
    # one counted connection is not enough
    assert findings([unresolved], {"zeek.connection": conns.slice(0, 1), "zeek.dns": dns}) == []


def test_nothing_counts_where_the_required_context_is_missing(tmp_path: Path) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    conns = events([{"t": 100 + i, "id": f"c{i}"} for i in range(5)])
    # the sensor sees no lookup of this host: its connections say nothing about DNS
    other = events([_lookup(90, "192.0.2.1", host="10.0.0.2")], "zeek.dns")
    assert findings([unresolved], {"zeek.connection": conns, "zeek.dns": other}) == []
    # a lookup of its own 40 minutes earlier is too far
    early = events([_lookup(100 - 2400, "192.0.2.1")], "zeek.dns")
    assert findings([unresolved], {"zeek.connection": conns, "zeek.dns": early}) == []


def test_a_late_companion_retracts_the_finding(tmp_path: Path) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    engine = engine_for([unresolved])
    engine.observe("zeek.dns", events([_lookup(10, "192.0.2.1")], "zeek.dns"))
    engine.observe("zeek.connection", events([{"t": 100 + i, "id": f"c{i}"} for i in range(3)]))
    first = engine.finish()
    assert first.column("event.risk_score").to_pylist() == [40.0]
    assert first.column("furui.events").to_pylist() == [3]
    # another sensor's DNS log arrives later: the address had been looked up after all
    engine.observe("zeek.dns", events([_lookup(60, "203.0.113.9", host="10.0.0.3")], "zeek.dns"))
    second = engine.finish()
    assert second.column("finding.id").to_pylist() == first.column("finding.id").to_pylist()
    assert second.column("event.risk_score").to_pylist() == [0.0]
    assert canonical(second) == []


def test_keys_expand_lists_and_skip_nulls() -> None:
    table = events(
        [
            {"dns.resolved_ip": ["192.0.2.1", "192.0.2.2"]},
            {"dns.resolved_ip": []},
            {"dns.resolved_ip": None, "source.ip": None},
            {"dns.resolved_ip": ["192.0.2.3"], "source.ip": "10.0.0.9"},
        ],
        "zeek.dns",
    )
    batch = Batch("zeek.dns", table, Networks.of(["10.0.0.0/8"]))
    keys = key_rows(batch, np.arange(4), ["source.ip", "dns.resolved_ip"])
    assert keys.owner.tolist() == [0, 0, 3]
    assert keys.key.to_pylist() == [
        "10.0.0.1\x1f192.0.2.1",
        "10.0.0.1\x1f192.0.2.2",
        "10.0.0.9\x1f192.0.2.3",
    ]


def test_has_companion_looks_in_the_window_around_each_event() -> None:
    companions = pa.array(["a", "a", "b"])
    times = np.array([100, 500, 300], dtype=np.int64)
    asked = pa.array(["a", "a", "a", "b", "c"])
    at = np.array([150, 420, 600, 290, 300], dtype=np.int64)
    found = has_companion(asked, at, companions, times, before_us=60, after_us=20)
    # a@150: 100 is 50 before; a@420: 500 is 80 after (> 20); a@600: 500 is 100 before (> 60);
    # b@290: 300 is 10 after; c: none
    assert found.tolist() == [True, False, False, True, False]


def test_thinning_companions_never_changes_an_answer() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    keys = pa.array([f"k{k}" for k in rng.integers(0, 5, n)])
    times = rng.integers(0, 100_000, n).astype(np.int64)
    before, after = 700, 300
    table = pa.table(
        {
            "rule_id": pa.repeat(pa.scalar("r"), n),
            "clause": pa.array(np.zeros(n, dtype=np.int32)),
            "key": keys,
            "bucket": pa.array(times // (before + after)),
            "ts": pa.array(times),
        }
    )
    thinned_table = thin(table)
    assert thinned_table.num_rows <= 2 * 5 * 100  # two per key and bucket
    asked = pa.array([f"k{k}" for k in rng.integers(0, 6, 2000)])
    at = rng.integers(-1000, 101_000, 2000).astype(np.int64)
    full = has_companion(asked, at, keys, times, before_us=before, after_us=after)
    thinned = has_companion(
        asked,
        at,
        thinned_table.column("key").combine_chunks(),
        np.asarray(thinned_table.column("ts").to_numpy()),
        before_us=before,
        after_us=after,
    )
    assert full.any()
    assert (thinned == full).all()


def test_compaction_leaves_verdicts_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    lookups = [_lookup(10 * i, f"192.0.2.{i % 200}") for i in range(600)]
    conns = [
        {
            "t": 10 * i + 5,
            "destination.ip": f"192.0.2.{i % 200}" if i % 5 else f"198.51.100.{i % 50}",
            "id": f"c{i}",
        }
        for i in range(600)
    ]
    streams = {"zeek.connection": events(conns), "zeek.dns": events(lookups, "zeek.dns")}
    order = sorted(streams)
    whole = canonical(run(engine_for([unresolved]), streams, order=order))
    # every fifth connection goes to one of ten addresses no answer names
    assert {f["peer"] for f in whole} == {f"198.51.100.{n}" for n in range(0, 50, 5)}
    monkeypatch.setattr(absence, "COMPACT_AT", 64)  # compact (thin, cap, expire) all the time
    for rows in (7, 100):
        engine = engine_for([unresolved])
        assert canonical(run(engine, streams, batch_rows=rows, order=order)) == whole


def _kind(engine: RuleEngine) -> absence.AbsenceKind:
    (kind,) = engine.kinds
    assert isinstance(kind, absence.AbsenceKind)
    return kind


def _traffic(hours: int) -> dict[str, pa.Table]:
    """A host's lookups and connections, one of each a minute; every tenth connection goes
    to one of three addresses no answer names (two of each an hour: one finding each)."""
    lookups = [_lookup(60 * m, f"192.0.2.{m % 250}") for m in range(hours * 60)]
    conns = [
        {
            "t": 60 * m + 5,
            "destination.ip": f"198.51.100.{(m // 10) % 3}"
            if m % 10 == 0
            else f"192.0.2.{m % 250}",
            "id": f"c{m}",
        }
        for m in range(hours * 60)
    ]
    return {"zeek.connection": events(conns), "zeek.dns": events(lookups, "zeek.dns")}


def _replay(
    engine: RuleEngine, streams: dict[str, pa.Table], minutes: int = 10, *, finish: bool = True
) -> pa.Table:
    """Feed ``_traffic`` ten minutes at a time, lookups then connections, as a sensor's
    rotated logs come; then finish (unless the run is to stop at a checkpoint)."""
    found = [
        engine.observe(stream, streams[stream].slice(start, minutes))
        for start in range(0, streams["zeek.dns"].num_rows, minutes)
        for stream in ("zeek.dns", "zeek.connection")
    ]
    if finish:
        found.append(engine.finish())
    return pa.concat_tables(found)


def _pending(kind: absence.AbsenceKind) -> int:
    return int(kind.judged.num_rows)


def test_settled_verdicts_keep_state_flat_and_change_no_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    monkeypatch.setattr(absence, "COMPACT_AT", 64)
    sizes = {}
    for hours in (4, 12):
        engine = engine_for([unresolved], limits=Limits(settle_seconds=3600))
        found = canonical(_replay(engine, _traffic(hours)))
        # verdicts never wait for a companion beyond the end of the input instead
        waiting = engine_for([unresolved], limits=Limits(settle_seconds=10**9))
        assert canonical(_replay(waiting, _traffic(hours))) == found
        assert len(found) == 3 * hours
        kind = _kind(engine)
        sizes[hours] = (_pending(kind), kind.keys.num_rows, kind.companions.num_rows)
        # settled: counted connections alone (those to the three addresses), without keys
        assert kind.settled.num_rows >= 6 * (hours - 3)
        assert {int(i[1:]) % 10 for i in kind.settled.column("id").to_pylist()} == {0}
        assert set(kind.keys.column("serial").to_pylist()) <= set(
            kind.judged.column("serial").to_pylist()
        )
    # an hour and a half of connections wait for lookups (30 min `after` + settle_seconds),
    # however long the input: three times the input, not three times the state
    for before, after in zip(sizes[4], sizes[12], strict=True):
        assert after <= 1.5 * before
    assert sizes[12][0] < 2 * 90


def test_a_settled_verdict_ignores_later_companions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    monkeypatch.setattr(absence, "COMPACT_AT", 1)
    engine = engine_for([unresolved], limits=Limits(settle_seconds=60))
    engine.observe("zeek.dns", events([_lookup(10, "192.0.2.1")], "zeek.dns"))
    engine.observe("zeek.connection", events([{"t": 100 + i, "id": f"c{i}"} for i in range(3)]))
    # the host's lookups an hour on: every verdict's companions are in (30 min + 60 s)
    later = [_lookup(4000 + i, "192.0.2.1") for i in range(30)]
    engine.observe("zeek.dns", events(later, "zeek.dns"))
    assert _pending(_kind(engine)) == 0
    first = engine.finish()
    assert first.column("event.risk_score").to_pylist() == [40.0]
    # another sensor's log naming the address arrives after the verdict: too late to change it
    engine.observe("zeek.dns", events([_lookup(60, "203.0.113.9", host="10.0.0.3")], "zeek.dns"))
    second = engine.finish()
    assert second.column("event.risk_score").to_pylist() in ([], [40.0])


def test_a_silent_companion_stream_does_not_hold_verdicts_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    monkeypatch.setattr(absence, "COMPACT_AT", 64)
    conns = events([{"t": 60 * m, "id": f"c{m}"} for m in range(600)])  # ten hours, no DNS
    quick = engine_for([unresolved], limits=Limits(lateness_seconds=1800))
    # no lookup of the host is ever seen: nothing counts, and nothing waits much longer
    # than lateness_seconds (half an hour of connections, twice over between compactions)
    assert canonical(run(quick, {"zeek.connection": conns}, batch_rows=20)) == []
    assert _kind(quick).judged.num_rows <= 2 * 31


def test_too_many_pending_events_drop_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    monkeypatch.setattr(absence, "COMPACT_AT", 16)
    streams = _traffic(2)
    few = engine_for([unresolved], limits=Limits(max_pending=40))
    # connections read before any lookup (as files are): they all wait for the DNS log
    with caplog.at_level(logging.WARNING):
        found = canonical(run(few, streams, batch_rows=10, order=["zeek.connection", "zeek.dns"]))
    assert "rules.max_pending = 40" in caplog.text
    kind = _kind(few)
    assert kind.unjudged >= 120 - 2 * 40
    # what was kept is judged as before: the latest connections' findings, no others
    whole = canonical(run(engine_for([unresolved]), streams))
    assert found
    assert all(f in whole for f in found)
    assert len(found) < len(whole)


def test_an_event_too_far_behind_its_stream_is_dropped(tmp_path: Path) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    lookups = events([_lookup(t, "192.0.2.1") for t in (0, 5000, 6000, 9000)], "zeek.dns")
    for start, expected in ((9000 - 3000, 1), (9000 - 4000, 0)):
        engine = engine_for([unresolved], limits=Limits(settle_seconds=3600))
        engine.observe("zeek.dns", lookups)
        engine.observe("zeek.connection", events([{"t": 9000, "id": "now"}]))
        # three connections 50 (or 67) minutes behind the newest: within settle_seconds
        # (3600) their companions are still kept; beyond it they may be gone
        late = events([{"t": start + i, "id": f"c{i}"} for i in range(3)])
        engine.observe("zeek.connection", late)
        assert len(canonical(engine.finish())) == expected
        assert _kind(engine).unjudged == 3 * (1 - expected)


def test_a_run_restored_from_a_snapshot_finds_what_one_run_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unresolved = rule(tmp_path, "absence", UNRESOLVED, extra=MESSAGE)
    monkeypatch.setattr(absence, "COMPACT_AT", 64)
    traffic = _traffic(6)
    whole = canonical(_replay(engine_for([unresolved]), traffic))
    first = engine_for([unresolved])
    head = {s: t.slice(0, 200) for s, t in traffic.items()}
    tail = {s: t.slice(200) for s, t in traffic.items()}
    parts = [_replay(first, head, finish=False)]
    # pending, settled and companion rows all cross the checkpoint
    kind = _kind(first)
    assert kind.judged.num_rows
    assert kind.settled.num_rows
    assert kind.companions.num_rows
    second = engine_for([unresolved])
    second.restore(first.snapshot())
    parts.append(_replay(second, tail))
    assert canonical(pa.concat_tables(parts)) == whole
