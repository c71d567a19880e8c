"""``beacon``: periodic connections from one host to one destination (IP pair, SNI, Host).

The score follows RITA's beacon analysis (activecm/rita, ``analysis/beacons.go``), computed
here with numpy over every group at once:

* **interval** subscore, on the gaps between the distinct connection times: the mean of a
  skew score, ``1 - |Bowley skewness|`` (taken as 0 when the interquartile range is below
  ``skew_floor`` seconds or the median equals a quartile, as RITA does, since jitter of a
  fraction of a second is not skew), and a dispersion score, ``(median - MAD) / median``;
* **size** subscore, the same two scores on the bytes the host sent per connection (RITA's
  data-size score): a C2 check-in sends the same few bytes every time;
* **count** subscore, ``min(1, connections / full_count)``: a handful of regular
  connections is weak evidence, a day of them is not.

The beacon score is the weighted mean of the subscores (``weights``, validated to sum to 1;
without ``size_field`` its weight is shared out). A group needs ``min_connections``
connections over at least ``min_span`` and a score of ``min_score``. RITA's histogram and
duration subscores assume a whole day of data and are left out: a capture of minutes must
still show a beacon. The finding's confidence is the rule's confidence times the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from correlator.engine.batch import Batch
from correlator.engine.kinds.base import Context, GroupedParams, hits
from correlator.engine.kinds.threshold import CountingKind, base_stats
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS, Duration, format_duration, group_starts

_SERIES = pa.schema(
    [pa.field("gid", pa.string()), pa.field("ts", pa.int64()), pa.field("size", pa.float64())]
)


class BeaconWeights(BaseModel):
    """Weights of the subscores; they sum to 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval: float = Field(default=0.5, ge=0, le=1)
    size: float = Field(default=0.25, ge=0, le=1)
    count: float = Field(default=0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        if not math.isclose(self.interval + self.size + self.count, 1.0, abs_tol=1e-9):
            raise ValueError("beacon weights must sum to 1")
        return self


class BeaconParams(GroupedParams):
    """Params of ``beacon``; ``group_by`` names the destination (IP and port, SNI, Host)."""

    window: Duration = 86400
    # bytes the host sent per connection (size subscore); none: interval and count only
    size_field: str | None = None
    min_connections: int = Field(default=20, ge=4)
    min_span: Duration = 300
    min_score: float = Field(default=0.8, gt=0, le=1)
    # connections that earn the full count subscore
    full_count: int = Field(default=48, ge=4)
    # an interquartile range of intervals below this many seconds means no skew
    skew_floor: float = Field(default=10.0, ge=0)
    weights: BeaconWeights = BeaconWeights()

    def fields(self) -> list[str]:
        """Every event field the params read."""
        return [*super().fields(), *([self.size_field] if self.size_field else [])]


class BeaconKind(CountingKind):
    """Periodicity per host, destination and window."""

    name = "beacon"
    Params = BeaconParams
    statistics = frozenset(
        {
            "count", "first", "last", "span", "window", "peer", "interval", "jitter",
            "score", "interval_score", "size_score", "count_score", "size",
        }
    )  # fmt: skip
    default_message = (
        "{count} connections from {host} every {interval} ± {jitter} (beacon score {score:.2f})"
    )

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.series = _SERIES.empty_table()
        self._scores: dict[str, dict[str, object]] = {}

    def fold(self, batch: Batch) -> None:
        """Fold the batch: group rows, plus each group's latest connection times."""
        parts = []
        for rule in self.rules_on(batch.stream):
            params = rule.params
            assert isinstance(params, BeaconParams)  # noqa: S101
            sizes = (
                pc.cast(batch.column(params.size_field), pa.float64())
                if params.size_field and batch.has(params.size_field)
                else pa.nulls(batch.rows, pa.float64())
            )
            found = hits(
                batch,
                rule,
                batch.where(params.where),
                group_by=params.group_by,
                window_seconds=params.window,
                context=self.context,
                extra={"size": sizes},
            )
            if found.num_rows:
                parts.append(found)
        if not parts:
            return
        found = self.state.on_time(pa.concat_tables(parts))  # every rule's hits: one merge
        if not found.num_rows:
            return
        self.state.add(found.drop_columns(["size"]))
        fresh = found.select(["gid", "ts", "size"]).cast(_SERIES)
        self.series = _merge_latest(self.series, fresh, self.context.limits.max_timestamps)

    def forget(self, gids: pa.Array) -> None:
        """Drop closed groups and their connection times."""
        super().forget(gids)
        self.series = self.series.filter(
            pc.invert(pc.is_in(self.series.column("gid"), value_set=gids))
        )

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Score every group's connection times and sizes at once."""
        n = groups.num_rows
        ok = np.zeros(n, dtype=bool)
        confidence = np.zeros(n, dtype=np.float64)
        counts = np.asarray(groups.column("count").to_numpy(zero_copy_only=False))
        enough = counts >= self.per_rule(groups, "min_connections")
        if not enough.any():
            return ok, confidence
        gids = groups.column("gid").filter(pa.array(enough))
        series = self.series.filter(pc.is_in(self.series.column("gid"), value_set=gids))
        rules = groups.column("rule_id").to_pylist()
        floors = {
            g: float(getattr(self.rules[r].params, "skew_floor", 10.0))
            for g, r in zip(groups.column("gid").to_pylist(), rules, strict=True)
        }
        scored = score_series(series, floors)
        position = {g: i for i, g in enumerate(scored["gid"])}
        for i, gid in enumerate(groups.column("gid").to_pylist()):  # per group: few
            j = position.get(gid)
            if j is None or not enough[i]:
                continue
            params = self.rules[rules[i]].params
            assert isinstance(params, BeaconParams)  # noqa: S101
            total = _combine(scored, j, params)
            span = float(scored["span"][j])
            ok[i] = total >= params.min_score and span >= params.min_span
            confidence[i] = self.rules[rules[i]].spec.rule.confidence * total
            self._scores[gid] = {
                "interval": format_duration(float(scored["median"][j])),
                "jitter": format_duration(float(scored["mad"][j])),
                "score": total,
                "interval_score": float(scored["interval_score"][j]),
                "size_score": float(scored["size_score"][j]),
                "count_score": min(1.0, float(scored["n"][j]) / params.full_count),
                "size": float(scored["size_median"][j]),
            }
        return ok, confidence

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Counts, times and the beacon statistics of emitted groups."""
        stats = base_stats(groups)
        for item, gid in zip(stats, groups.column("gid").to_pylist(), strict=True):
            item.update(self._scores.pop(gid, {}))
        return stats

    def snapshot(self) -> dict[str, pa.Table]:
        """Group state, watermarks and connection times."""
        return {**super().snapshot(), "beacon.series": self.series}

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        super().restore(tables)
        series = tables.get("beacon.series", _SERIES.empty_table()).cast(_SERIES)
        known = self.state.groups.column("gid")
        self.series = series.filter(pc.is_in(series.column("gid"), value_set=known))


def _combine(
    scored: Mapping[str, npt.NDArray[np.float64] | list[str]], j: int, params: BeaconParams
) -> float:
    """The weighted beacon score of group ``j``."""
    weights = params.weights
    count = min(1.0, float(scored["n"][j]) / params.full_count)
    size = float(scored["size_score"][j])
    if params.size_field is None or math.isnan(size):
        share = weights.interval + weights.count
        return (
            weights.interval * float(scored["interval_score"][j]) + weights.count * count
        ) / share
    return (
        weights.interval * float(scored["interval_score"][j])
        + weights.size * size
        + weights.count * count
    )


def _merge_latest(state: pa.Table, fresh: pa.Table, cap: int) -> pa.Table:
    """Add connection times, keeping each group's ``cap`` latest (ties by size)."""
    touched = pc.is_in(state.column("gid"), value_set=pc.unique(fresh.column("gid")))
    both = pa.concat_tables([state.filter(touched), fresh])
    both = both.take(
        pc.sort_indices(
            both, sort_keys=[("gid", "ascending"), ("ts", "descending"), ("size", "descending")]
        )
    )
    starts = group_starts(both.column("gid").combine_chunks())
    index = np.arange(both.num_rows)
    rank = index - np.maximum.accumulate(np.where(starts, index, 0))
    return pa.concat_tables([state.filter(pc.invert(touched)), both.filter(pa.array(rank < cap))])


def score_series(
    series: pa.Table, floors: Mapping[str, float] | None = None
) -> dict[str, npt.NDArray[np.float64] | list[str]]:
    """Interval and size statistics of every group in ``series`` (gid, ts µs, size).

    ``floors`` gives each group's ``skew_floor`` (10 s, RITA's, where not given).

    Returns:
        Per group (in ``gid`` order): ``n`` connections, ``span`` seconds, interval
        ``median`` and ``mad`` seconds, ``interval_score``, ``size_median`` and
        ``size_score`` (NaN without sizes).
    """
    series = series.take(
        pc.sort_indices(series, sort_keys=[("gid", "ascending"), ("ts", "ascending")])
    )
    gid_col = series.column("gid").combine_chunks()
    starts = group_starts(gid_col)
    group = np.cumsum(starts) - 1
    groups = int(group[-1]) + 1 if len(group) else 0
    ts = np.asarray(series.column("ts").to_numpy(), dtype=np.float64) / MICROS
    sizes = np.asarray(
        pc.fill_null(series.column("size"), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64
    )
    n = np.bincount(group, minlength=groups).astype(np.float64)
    first = np.full(groups, np.inf)
    last = np.full(groups, -np.inf)
    np.minimum.at(first, group, ts)
    np.maximum.at(last, group, ts)
    # intervals between consecutive distinct times of the same group
    gaps = np.diff(ts)
    same = ~starts[1:]
    keep = same & (gaps > 0)
    interval_group = group[1:][keep]
    intervals = gaps[keep]
    names = gid_col.filter(pa.array(starts)).to_pylist()
    floor = np.array([(floors or {}).get(g, 10.0) for g in names], dtype=np.float64)
    median, mad, skew_ok = _median_mad(intervals, interval_group, groups)
    q1 = _quantile(intervals, interval_group, groups, 0.25)
    q3 = _quantile(intervals, interval_group, groups, 0.75)
    interval_score = _score(median, mad, q1, q3, skew_ok, floor=floor)
    has_size = ~np.isnan(sizes)
    size_group = group[has_size]
    size_values = sizes[has_size]
    s_median, s_mad, s_ok = _median_mad(size_values, size_group, groups)
    s_q1 = _quantile(size_values, size_group, groups, 0.25)
    s_q3 = _quantile(size_values, size_group, groups, 0.75)
    size_score = _score(s_median, s_mad, s_q1, s_q3, s_ok, floor=np.full(groups, 10.0))
    return {
        "gid": names,
        "n": n,
        "span": np.where(n > 0, last - first, 0.0),
        "median": median,
        "mad": mad,
        "interval_score": np.where(np.isnan(interval_score), 0.0, interval_score),
        "size_median": s_median,
        "size_score": size_score,
    }


def _quantile(
    values: npt.NDArray[np.float64], group: npt.NDArray[np.int64], groups: int, q: float
) -> npt.NDArray[np.float64]:
    """Per-group quantile (linear interpolation, as numpy's default); NaN for empty groups."""
    out = np.full(groups, np.nan)
    if not len(values):
        return out
    order = np.lexsort((values, group))
    v, g = values[order], group[order]
    count = np.bincount(g, minlength=groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    present = count > 0
    pos = start[present] + q * (count[present] - 1)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, start[present] + count[present] - 1)
    frac = pos - low
    out[present] = v[low] + frac * (v[high] - v[low])
    return out


def _median_mad(
    values: npt.NDArray[np.float64], group: npt.NDArray[np.int64], groups: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per-group median, median absolute deviation, and whether there are 3+ values."""
    median = _quantile(values, group, groups, 0.5)
    deviation = np.abs(values - median[group]) if len(values) else values
    mad = _quantile(deviation, group, groups, 0.5)
    enough = np.bincount(group, minlength=groups) >= 3  # noqa: PLR2004 - RITA's minimum
    return median, mad, enough


def _score(
    median: npt.NDArray[np.float64],
    mad: npt.NDArray[np.float64],
    q1: npt.NDArray[np.float64],
    q3: npt.NDArray[np.float64],
    enough: npt.NDArray[np.bool_],
    *,
    floor: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Mean of the skew score and the dispersion score (NaN where there is too little)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = q3 - q1
        skewed = (spread >= floor) & (median != q1) & (median != q3)
        skew = np.where(skewed, (q1 + q3 - 2 * median) / np.where(spread == 0, 1, spread), 0.0)
        skew_score = 1.0 - np.abs(skew)
        dispersion = np.where(median > 0, (median - mad) / np.where(median > 0, median, 1), 0.0)
        dispersion = np.clip(dispersion, 0.0, 1.0)
    score = np.clip((skew_score + dispersion) / 2.0, 0.0, 1.0)
    return np.where(enough, score, np.nan)
