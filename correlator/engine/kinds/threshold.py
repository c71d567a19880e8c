"""``threshold``: events counted per host, group and window; and the counting base class.

``CountingKind`` is shared by every kind whose state is ``GroupState`` (``match``,
``threshold``, ``beacon``, ``sequence``, ``new``, ``rare``, ``absence``). ``threshold``
reports a group once it holds ``min_count`` events, ``min_distinct`` distinct values of
``distinct_field`` (port scans, brute force, NXDOMAIN bursts) and a sum of ``sum_field``
of ``min_sum`` (bytes sent to one address), those it is given. Windows are tumbling and
epoch-aligned (``engine/window.py``); a burst that straddles a boundary counts in two
windows, so choose ``window`` at least twice the burst you want to catch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from correlator.engine.batch import Batch
from correlator.engine.kinds.base import (
    Context,
    GroupedParams,
    Kind,
    emissions,
    group_values,
    hits,
    render,
    seconds,
)
from correlator.engine.kinds.groups import GroupState
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS, Duration, format_duration

#: How a message names the host's part in the evidence.
_ROLE = {"source": "source", "target": "target", None: "-"}


class ThresholdParams(GroupedParams):
    """Params of ``threshold``."""

    window: Duration
    # events a group needs (alone, or with min_distinct)
    min_count: int = Field(default=1, ge=1)
    # count distinct values of this field instead (ports, hosts, user names …)
    distinct_field: str | None = None
    min_distinct: int | None = Field(default=None, ge=2)
    # sum this numeric field over the group's events instead (bytes; null counts as 0)
    sum_field: str | None = None
    min_sum: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _a_threshold(self) -> Self:
        if (self.distinct_field is None) != (self.min_distinct is None):
            raise ValueError("distinct_field and min_distinct go together")
        if (self.sum_field is None) != (self.min_sum is None):
            raise ValueError("sum_field and min_sum go together")
        if self.distinct_field is None and self.sum_field is None and self.min_count < 2:  # noqa: PLR2004
            raise ValueError("a threshold needs min_count >= 2, a distinct count or a sum")
        return self

    def fields(self) -> list[str]:
        """Every event field the params read."""
        extra = [f for f in (self.distinct_field, self.sum_field) if f]
        return [*super().fields(), *extra]


class CountingKind(Kind):
    """Shared by the kinds whose state is ``GroupState``: fold, close, judge, emit."""

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.watermarks: dict[str, int] = {}
        self.state = GroupState(context.limits, self.watermarks)

    def rules_on(self, stream: str) -> list[Rule]:
        """The rules that read ``stream``."""
        return [r for r in self.rules.values() if stream in self.streams_of(r)]

    def collect(self, batch: Batch, rule: Rule) -> pa.Table:
        """Hits of one rule, with the value to count distinctly and the amount to sum.

        ``value`` is null for rules that count no distinct values, ``amount`` zero for
        rules that sum nothing.
        """
        params = rule.params
        assert isinstance(params, GroupedParams)  # noqa: S101
        mask = batch.where(params.where)
        distinct = getattr(params, "distinct_field", None)
        summed = getattr(params, "sum_field", None)
        extra = {
            "value": batch.text(distinct) if distinct else pa.nulls(batch.rows, pa.string()),
            "amount": (
                pc.cast(batch.column(summed), pa.float64())
                if summed
                else pa.repeat(pa.scalar(0.0), batch.rows)
            ),
        }
        return hits(
            batch,
            rule,
            mask,
            group_by=params.group_by,
            window_seconds=params.window,
            context=self.context,
            extra=extra,
        )

    def fold(self, batch: Batch) -> None:
        """Fold one batch into the state: every rule's hits, then one merge for them all."""
        rules = self.rules_on(batch.stream)
        parts = [found for found in (self.collect(batch, r) for r in rules) if found.num_rows]
        if not parts:
            return
        found = pa.concat_tables(parts)
        counted = any(getattr(r.params, "distinct_field", None) for r in rules)
        values = pc.cast(found.column("value"), pa.string()).combine_chunks() if counted else None
        amounts = found.column("amount").combine_chunks()
        self.state.add(found.drop_columns(["value", "amount"]), values, amounts)

    def forget(self, gids: pa.Array) -> None:
        """Drop groups from the state (their window closed)."""
        self.state.remove(gids)

    def observe(self, batch: Batch) -> pa.Table | None:
        """Fold the batch in and emit the groups whose window closed."""
        self.fold(batch)
        if batch.rows:
            mark = int(batch.ts.max())
            self.watermarks[batch.stream] = max(self.watermarks.get(batch.stream, mark), mark)
        lateness = self.context.limits.lateness_seconds * MICROS
        closed = self.state.closed(self.watermarks, lateness)
        if not closed.num_rows:
            return None
        out = self._emit(closed.filter(closed.column("dirty")))
        self.forget(closed.column("gid"))
        return out

    def finish(self) -> pa.Table | None:
        """Emit every group changed since the last emission."""
        dirty = self.state.dirty()
        return self._emit(dirty) if dirty.num_rows else None

    def _emit(self, groups: pa.Table) -> pa.Table | None:
        if not groups.num_rows:
            return None
        gids = groups.column("gid")
        qualifies, confidence = self.judge(groups)
        retract = np.asarray(groups.column("emitted").to_numpy(zero_copy_only=False)) & ~qualifies
        out = qualifies | retract
        self.state.mark(gids, gids.filter(pa.array(qualifies)))
        if not out.any():
            return None
        rows = np.flatnonzero(out)
        chosen = groups.take(pa.array(rows))
        evidence = self.evidence_of(chosen.column("gid"))
        stats = self.statistics_of(chosen)
        messages = [
            self.message(chosen, i, stats[i]) if qualifies[r] else "retracted"
            for i, r in enumerate(rows)
        ]
        return emissions(
            {
                **{c: chosen.column(c) for c in ("rule_id", "host", "peer", "role", "discount")},
                **{c: chosen.column(c) for c in ("label", "dataset", "session", "flow")},
                **{c: chosen.column(c) for c in ("community", "src", "dst", "port")},
                "key": chosen.column("gid"),
                "ts": chosen.column("first_ts"),
                "last_ts": chosen.column("last_ts"),
                "events": chosen.column("count"),
                "event_ids": [evidence.get(g, []) for g in chosen.column("gid").to_pylist()],
                "first_id": chosen.column("first_id"),
                "confidence": pa.array(confidence[rows], pa.float64()),
                "message": messages,
                "retract": pa.array(retract[rows]),
            }
        )

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Which groups qualify, and the confidence of each (vectorised over groups)."""
        raise NotImplementedError

    def evidence_of(self, gids: pa.Array | pa.ChunkedArray) -> dict[str, list[str]]:
        """The event ids a finding of each group cites (the kept earliest, by default)."""
        return self.state.evidence_of(gids)

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Message statistics of groups about to be emitted (few)."""
        return base_stats(groups)

    def per_rule(self, groups: pa.Table, value: str) -> npt.NDArray[np.float64]:
        """A per-rule number (a params attribute, or ``confidence``) for each group."""
        rules = list(self.rules.values())
        table = np.array(
            [
                r.spec.rule.confidence if value == "confidence" else getattr(r.params, value)
                for r in rules
            ],
            dtype=np.float64,
        )
        index = pc.index_in(groups.column("rule_id"), value_set=pa.array([r.id for r in rules]))
        return table[np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)]

    def message(self, groups: pa.Table, row: int, stats: Mapping[str, object]) -> str:
        """The finding text of one group."""
        rule = self.rules[groups.column("rule_id")[row].as_py()]
        params = rule.params
        assert isinstance(params, GroupedParams)  # noqa: S101
        values = group_values(rule, groups.column("key")[row].as_py(), params.group_by)
        values.update(stats)
        values.update(
            peer=groups.column("peer")[row].as_py(), role=_ROLE[groups.column("role")[row].as_py()]
        )
        template = rule.spec.rule.message or self.default_message
        return render(template, values)

    default_message: ClassVar[str] = "{rule}: {count} events from {host}"

    def snapshot(self) -> dict[str, pa.Table]:
        """State tables and stream watermarks."""
        marks = pa.table(
            {
                "stream": pa.array(list(self.watermarks), pa.string()),
                "mark": pa.array(list(self.watermarks.values()), pa.int64()),
            }
        )
        return {**self.state.snapshot(self.name), f"{self.name}.watermarks": marks}

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        self.state.restore(tables, self.name, list(self.rules))
        marks = tables.get(f"{self.name}.watermarks")
        if marks is not None:
            self.watermarks.update(
                zip(
                    marks.column("stream").to_pylist(),
                    marks.column("mark").to_pylist(),
                    strict=True,
                )
            )


def base_stats(groups: pa.Table) -> list[dict[str, object]]:
    """Message statistics every counting kind fills: count, first, last, span, window."""
    first = groups.column("first_ts").to_pylist()
    last = groups.column("last_ts").to_pylist()
    counts = groups.column("count").to_pylist()
    windows = pc.subtract(groups.column("window_end"), groups.column("window")).to_pylist()
    return [
        {
            "count": c,
            "first": _iso(f),
            "last": _iso(lst),
            "span": format_duration(seconds(lst - f)),
            "window": format_duration(seconds(w)),
        }
        for c, f, lst, w in zip(counts, first, last, windows, strict=True)
    ]


def _iso(micro: int) -> str:
    return datetime.fromtimestamp(micro / MICROS, UTC).strftime("%Y-%m-%d %H:%M:%S")


class ThresholdKind(CountingKind):
    """Counts and distinct counts per host, group and window."""

    name = "threshold"
    Params = ThresholdParams
    statistics = frozenset(
        {"count", "distinct", "sum", "first", "last", "span", "window", "peer", "min_count"}
    )
    default_message = "{rule}: {count} events from {host} within {span}"

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Groups at or above their rule's count and distinct-count thresholds."""
        counts = np.asarray(groups.column("count").to_numpy(zero_copy_only=False))
        ok = counts >= self.per_rule(groups, "min_count")
        wanted = np.nan_to_num(self.per_rule(groups, "min_distinct"), nan=0.0)
        if (wanted > 0).any():
            seen = self.state.distinct_counts(groups.column("gid"))
            distinct = np.array([seen.get(g, 0) for g in groups.column("gid").to_pylist()])
            ok &= distinct >= wanted
        total = np.asarray(groups.column("total").to_numpy(zero_copy_only=False))
        ok &= total >= np.nan_to_num(self.per_rule(groups, "min_sum"), nan=0.0)
        return ok, self.per_rule(groups, "confidence")

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Counts, times and the distinct count of emitted groups."""
        stats = base_stats(groups)
        seen = self.state.distinct_counts(groups.column("gid"))
        cap = self.context.limits.max_distinct
        for item, gid, rule_id, total in zip(
            stats,
            groups.column("gid").to_pylist(),
            groups.column("rule_id").to_pylist(),
            groups.column("total").to_pylist(),
            strict=True,
        ):
            n = seen.get(gid, 0)
            params = self.rules[rule_id].params
            assert isinstance(params, ThresholdParams)  # noqa: S101
            item.update(distinct=f"{n}+" if n >= cap else n, min_count=params.min_count, sum=total)
        return stats
