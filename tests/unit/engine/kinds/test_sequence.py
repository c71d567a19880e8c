"""``sequence``: counts per step, order, maximum span, any arrival order."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from correlator.engine.fixtures import canonical, engine_for
from correlator.engine.kinds.base import Limits
from correlator.engine.kinds.sequence import completions
from tests.unit.engine.helpers import events, findings, rule

SSH = """entity = "source"
maxspan = "10m"
[[rule.params.steps]]
stream = "zeek.ssh"
by = ["source.ip", "destination.ip"]
min_count = 3
where = [{ field = "ok", op = "eq", value = false }]

[[rule.params.steps]]
stream = "zeek.ssh"
by = ["source.ip", "destination.ip"]
where = [{ field = "ok", op = "eq", value = true }]
"""


def _steps(rows: list[tuple[str, int, int]]) -> pa.Table:
    return pa.table(
        {
            "key": [k for k, _, _ in rows],
            "step": pa.array([s for _, s, _ in rows], pa.int32()),
            "ts": pa.array([t for _, _, t in rows], pa.int64()),
        }
    )


def test_completions_need_every_step_in_order_within_the_span() -> None:
    rows = _steps(
        [
            ("a", 0, 10), ("a", 0, 20), ("a", 1, 30),  # complete: 2 then 1
            ("b", 1, 5), ("b", 0, 10), ("b", 0, 20),  # second step before the first
            ("c", 0, 10), ("c", 0, 20), ("c", 1, 500),  # too slow
            ("d", 0, 10), ("d", 1, 15), ("d", 0, 20), ("d", 1, 25),  # the 2nd success completes
        ]
    )  # fmt: skip
    done = completions(rows, [2, 1], maxspan_us=100)
    assert sorted(
        zip(
            done.column("key").to_pylist(),
            done.column("ts").to_pylist(),
            done.column("start").to_pylist(),
            strict=True,
        )
    ) == [
        ("a", 30, 10),
        ("d", 25, 10),
    ]


def test_latest_start_is_chosen() -> None:
    rows = _steps([("a", 0, 0), ("a", 0, 50), ("a", 0, 90), ("a", 1, 120)])
    done = completions(rows, [1, 1], maxspan_us=40)
    assert done.column("start").to_pylist() == [90]


def test_login_after_failures(tmp_path: Path) -> None:
    seq = rule(tmp_path, "sequence", SSH, stream="zeek.ssh")
    rows = [{"t": t, "ok": False} for t in (0, 20, 40)] + [{"t": 60, "ok": True}]
    other = [
        {"t": t, "ok": o, "destination.ip": "203.0.113.50"} for t, o in ((0, False), (5, True))
    ]
    found = findings([seq], {"zeek.ssh": events(rows + other, "zeek.ssh")})
    assert [(f["host"], f["peer"], f["events"]) for f in found] == [("10.0.0.1", "203.0.113.9", 1)]
    assert "within 60.0 s" in found[0]["message"]


def test_any_arrival_order_gives_the_same_sequence(tmp_path: Path) -> None:
    seq = rule(tmp_path, "sequence", SSH, stream="zeek.ssh")
    rows = events([{"t": t, "ok": t == 60} for t in (0, 20, 40, 60)], "zeek.ssh")
    backwards = rows.take(pa.array([3, 2, 1, 0]))
    wide = Limits(lateness_seconds=10**6)
    assert findings([seq], {"zeek.ssh": backwards}, limits=wide, batch_rows=1) == findings(
        [seq], {"zeek.ssh": rows}
    )


def test_a_sequence_completed_before_a_checkpoint_keeps_its_duration(tmp_path: Path) -> None:
    seq = rule(tmp_path, "sequence", SSH, stream="zeek.ssh")
    rows = events([{"t": t, "ok": t == 60} for t in (0, 20, 40, 60)], "zeek.ssh")
    first = engine_for([seq])
    found = [first.observe("zeek.ssh", rows)]  # complete, but its window is still open
    second = engine_for([seq])
    second.restore(first.snapshot())
    found.append(second.finish())
    restored = canonical(pa.concat_tables(found))
    assert restored == findings([seq], {"zeek.ssh": rows})
    assert "within 60.0 s" in restored[0]["message"]


def test_a_batch_longer_than_max_steps_still_completes(tmp_path: Path) -> None:
    seq = rule(tmp_path, "sequence", SSH, stream="zeek.ssh")
    # three failures, a success within the span, then more successes long after it: in
    # one batch the late ones alone would be kept (max_steps), yet the early one completes
    times = [(0, False), (20, False), (40, False), (60, True)]
    times += [(t, True) for t in (10_000, 10_100, 10_200)]
    rows = events([{"t": t, "ok": ok} for t, ok in times], "zeek.ssh")
    few = Limits(max_steps=3)
    whole = findings([seq], {"zeek.ssh": rows}, limits=few)
    assert [(f["host"], f["events"]) for f in whole] == [("10.0.0.1", 1)]
    assert whole == findings([seq], {"zeek.ssh": rows}, limits=few, batch_rows=1)
