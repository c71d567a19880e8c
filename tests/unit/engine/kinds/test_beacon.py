"""``beacon``: RITA-style statistics against numpy, verdicts, retraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from correlator.engine.fixtures import canonical, engine_for
from correlator.engine.kinds.beacon import BeaconWeights, score_series
from tests.unit.engine.helpers import events, findings, rule

BEACON = """where = []
group_by = ["destination.ip", "destination.port"]
size_field = "source.bytes"
min_connections = 20
min_span = "5m"
"""


def _series(times: list[float], sizes: list[float]) -> pa.Table:
    return pa.table(
        {
            "gid": pa.array(["g"] * len(times)),
            "ts": pa.array([int(t * 1e6) for t in times], pa.int64()),
            "size": pa.array(sizes, pa.float64()),
        }
    )


def test_statistics_match_numpy() -> None:
    rng = np.random.default_rng(7)
    times = np.cumsum(rng.uniform(20, 40, size=50))
    sizes = rng.integers(100, 400, size=50).astype(float)
    scored = score_series(_series(times.tolist(), sizes.tolist()))
    gaps = np.diff(np.sort(times))
    assert scored["median"][0] == pytest.approx(np.median(gaps))
    assert scored["mad"][0] == pytest.approx(np.median(np.abs(gaps - np.median(gaps))))
    assert scored["size_median"][0] == pytest.approx(np.median(sizes))
    assert scored["n"][0] == 50
    assert scored["span"][0] == pytest.approx(times[-1] - times[0])


def test_periodic_scores_high_and_random_low() -> None:
    rng = np.random.default_rng(1)
    steady = _series([30.0 * i + rng.normal(0, 0.3) for i in range(60)], [120.0] * 60)
    noisy = _series(
        np.cumsum(rng.exponential(30, size=60)).tolist(), rng.integers(50, 5000, 60).tolist()
    )
    assert float(score_series(steady)["interval_score"][0]) > 0.95
    assert float(score_series(noisy)["interval_score"][0]) < 0.6
    assert float(score_series(steady)["size_score"][0]) == 1.0
    # uniform random sizes keep a fair dispersion score: RITA's size score alone is weak
    assert float(score_series(noisy)["size_score"][0]) < 0.8


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        BeaconWeights(interval=0.5, size=0.5, count=0.5)


def test_beacon_finding_says_what_was_seen(tmp_path: Path) -> None:
    beacon = rule(tmp_path, "beacon", BEACON, extra='message = "every {interval} ± {jitter}"\n')
    rows = [{"t": 30 * i, "source.bytes": 200} for i in range(48)]
    found = findings([beacon], {"zeek.connection": events(rows)})
    assert [(f["host"], f["peer"], f["events"], f["message"]) for f in found] == [
        ("10.0.0.1", "203.0.113.9", 48, "every 30.0 s ± 0.0 s")
    ]
    assert findings([beacon], {"zeek.connection": events(rows[:19])}) == []  # too few


def test_a_beacon_that_stops_being_one_is_retracted(tmp_path: Path) -> None:
    beacon = rule(tmp_path, "beacon", BEACON)
    engine = engine_for([beacon])
    steady = events([{"t": 30 * i, "source.bytes": 200, "id": f"a{i}"} for i in range(40)])
    engine.observe("zeek.connection", steady)
    first = engine.finish()
    assert first.column("event.risk_score").to_pylist() == [40.0]
    rng = np.random.default_rng(3)
    burst = events(
        [
            {"t": 1200 + float(t), "source.bytes": int(s), "id": f"b{i}"}
            for i, (t, s) in enumerate(
                zip(np.cumsum(rng.exponential(5, 200)), rng.integers(50, 9000, 200), strict=True)
            )
        ]
    )
    engine.observe("zeek.connection", burst)
    second = engine.finish()
    assert second.column("finding.id").to_pylist() == first.column("finding.id").to_pylist()
    assert second.column("event.risk_score").to_pylist() == [0.0]  # retracted
    assert canonical(second) == []
