"""``absence``: events of one stream that lack (or have) a companion event in another.

A *judged* event (``stream`` and ``where``, for example an outbound connection) counts
when no ``unless`` companion exists and every ``requires`` companion does. A companion
is an event of the clause's ``stream`` and ``where`` whose ``by`` fields equal the judged
event's ``on`` fields, position by position, at most ``before`` earlier or ``after`` later
than it. A list-valued field (the addresses of a DNS answer) matches if any element does.
Counted events are then judged as ``threshold`` judges them: per host, ``group_by`` and
``window``, at least ``min_count`` events (and ``min_distinct`` values of
``distinct_field``). This is what "connection without a DNS lookup" and "DNS answer never
connected to" need, which ordered ``sequence`` steps cannot say: the absence of an event.

The verdict on a judged event depends on events that may arrive later (another stream,
another file), so it waits: it is *settled* once every clause's stream has moved
``settle_seconds`` past the event's ``after`` (a clause whose stream stays silent for
``lateness_seconds`` is judged on what was seen). A settled event that counts moves to the
``settled`` table (at most ``max_distinct`` per group), without its keys; one that does not
is dropped, and a group left with no events is forgotten. Groups are emitted when their
window closes (or at ``finish``) from their settled and still pending events; a companion
arriving before a verdict settles marks the groups it can change dirty, and a finding that
no longer holds is retracted. A judged event more than ``settle_seconds`` behind its
stream's newest is dropped (counted): its companions may be gone. Companions are thinned to
the earliest and latest per key and window-wide time bucket, and kept only as far back as a
pending event can look. So state holds ``settle_seconds`` (plus the clauses' ``after``) of
judged events, not a day of them; ``max_pending`` bounds it when a companion stream lags
far behind. Tables are compacted when they have doubled, and verdicts settled when half the
waiting events can be, so the cost per event stays constant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.batch import Batch
from correlator.engine.kinds.absence_params import AbsenceParams, Companion
from correlator.engine.kinds.base import Context, hits, only_rules
from correlator.engine.kinds.companions import COMPANIONS, companion_rows, key_rows, thin
from correlator.engine.kinds.settling import earliest, ripe_before, ripe_mask, verdicts
from correlator.engine.kinds.threshold import CountingKind, ThresholdKind
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS

logger = logging.getLogger(__name__)

#: Judged events: one row per event and group (an event of ``entity = "both"`` is two),
#: each with a serial number that its keys refer to (internal: no verdict depends on it).
_JUDGED: Final = pa.schema(
    [
        pa.field("rule_id", pa.string()),
        pa.field("gid", pa.string()),
        pa.field("ts", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("value", pa.string()),
        pa.field("serial", pa.int64()),
    ]
)
#: Judged events whose verdict is taken and counts: no keys, never changing again.
_SETTLED: Final = pa.schema([_JUDGED.field(n) for n in ("rule_id", "gid", "ts", "id", "value")])
#: The join keys of pending judged events, one row per clause and key (lists give several).
_KEYS: Final = pa.schema(
    [
        pa.field("serial", pa.int64()),
        pa.field("clause", pa.int32()),
        pa.field("key", pa.string()),
        pa.field("ts", pa.int64()),
    ]
)


#: Rows the tables may hold before the first compaction.
COMPACT_AT: Final = 16_384
#: Judged events held back from the group state before they are merged at the latest.
MERGE_AT: Final = 65_536


class AbsenceKind(CountingKind):
    """Events without (or with) companions, counted per host, group and window."""

    name = "absence"
    Params = AbsenceParams
    statistics = ThresholdKind.statistics - {"sum"}
    default_message = "{rule}: {count} events from {host} within {span}"

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.judged = _JUDGED.empty_table()  # waiting for their verdict
        self.settled = _SETTLED.empty_table()
        self._settled_capped = 0  # settled rows after the last cap
        self.keys = _KEYS.empty_table()
        self.companions = COMPANIONS.empty_table()
        # the counted events of the groups being emitted (set by ``_emit`` for its helpers)
        self._current: pa.Table | None = None
        self._warned = False
        self._warned_pending = False
        self.unjudged = 0  # judged events dropped before a verdict (too late, or too many)
        self._compacted = 0  # table rows after the last compaction
        self._serial = 0  # the next judged event's serial number
        # per rule, the time of its oldest pending event (or earlier: then a settle is early)
        self._oldest: dict[str, int] = {}
        # judged events not yet merged into the group state (``_merge``)
        self._unmerged: list[pa.Table] = []

    @classmethod
    def streams_of(cls, rule: Rule) -> frozenset[str]:
        """The judged stream and the streams of the clauses."""
        params = rule.params
        assert isinstance(params, AbsenceParams)  # noqa: S101
        return frozenset({params.stream, *(c.stream for c in params.clauses)})

    # -- folding --------------------------------------------------------------------------

    def fold(self, batch: Batch) -> None:
        """Judged events into groups and keys; companions into their table; settle."""
        marks = dict(self.watermarks)
        if batch.rows:
            mark = int(batch.ts.max())
            marks[batch.stream] = max(marks.get(batch.stream, mark), mark)
        judged: list[pa.Table] = []
        keys: list[pa.Table] = []
        companions: list[pa.Table] = []
        for rule in self.rules_on(batch.stream):
            params = rule.params
            assert isinstance(params, AbsenceParams)  # noqa: S101
            if params.stream == batch.stream:
                found = self._judged_rows(batch, rule, params, self.watermarks.get(batch.stream))
                if found.num_rows:
                    serial = np.arange(self._serial, self._serial + found.num_rows, dtype=np.int64)
                    self._serial += found.num_rows
                    found = found.append_column("serial", pa.array(serial))
                    judged.append(found.select(_JUDGED.names))
                    first = int(pc.min(found.column("ts")).as_py())
                    self._oldest[rule.id] = min(self._oldest.get(rule.id, first), first)
                    keys.extend(self._judged_keys(batch, params, found))
            for index, clause in enumerate(params.clauses):
                if clause.stream == batch.stream:
                    part = companion_rows(batch, rule, index, clause)
                    if part.num_rows:
                        companions.append(part)
                        self._touch(rule, clause, part.column("ts"))
        if judged:
            self._keep(pa.concat_tables(judged), keys)
        if companions:
            self.companions = pa.concat_tables([self.companions, *companions])
        self._compact(marks)
        held = sum(t.num_rows for t in self._unmerged)
        if held >= MERGE_AT or (held and self._may_close(marks)):
            self._merge()

    def _merge(self) -> None:
        """Fold the judged events held back into the group state, in one merge.

        A merge costs a pass over the state's groups whatever the batch, so judged events
        are merged when the tables are compacted or ``MERGE_AT`` of them are held, not per
        batch; sooner where the state is read: before a window of theirs may close, at
        ``finish`` and snapshots.
        """
        if self._unmerged:
            self.state.add(pa.concat_tables(self._unmerged))
            self._unmerged = []

    def _may_close(self, marks: Mapping[str, int]) -> bool:
        """Whether a window of a held-back event could close on these watermarks."""
        lateness = self.context.limits.lateness_seconds * MICROS
        newest = max(marks.values(), default=np.iinfo(np.int64).min)
        return any(
            int(pc.min(t.column("window_end")).as_py()) + lateness <= newest
            for t in self._unmerged
            if t.num_rows
        )

    def finish(self) -> pa.Table | None:
        """Merge what is held back, then emit every changed group."""
        self._merge()
        return super().finish()

    def _compact(self, marks: Mapping[str, int]) -> None:
        """Settle ripe verdicts, thin and expire companions, drop dead keys and groups.

        Done once the tables doubled since last time (amortised linear). Thinning,
        expiring and settling only drop rows no verdict can use, so doing it now and then
        rather than per batch changes nothing but the cost.
        """
        size = self.companions.num_rows + self.keys.num_rows + self.judged.num_rows
        if size < max(2 * self._compacted, COMPACT_AT) and not self._ripe(marks):
            return
        self._merge()
        self._settle(marks)
        self._bound_pending()
        # capping below only drops events, so this stays a lower bound (settling early)
        self._oldest = self._oldest_pending()
        self.companions = thin(self.companions)
        self._expire(marks)
        self.judged = self._capped(self.judged)
        # the keys of every event settled, dropped or capped above go in one pass
        serials = self.judged.column("serial").combine_chunks()
        alive = pc.is_in(self.keys.column("serial"), value_set=serials)
        self.keys = self.keys.filter(alive)
        self._compacted = self.companions.num_rows + self.keys.num_rows + self.judged.num_rows

    def _judged_rows(
        self, batch: Batch, rule: Rule, params: AbsenceParams, mark: int | None
    ) -> pa.Table:
        distinct = params.distinct_field
        found = hits(
            batch,
            rule,
            batch.where(params.where),
            group_by=params.group_by,
            window_seconds=params.window,
            context=self.context,
            extra={
                "value": batch.text(distinct) if distinct else pa.nulls(batch.rows, pa.string()),
                "row": pa.array(np.arange(batch.rows, dtype=np.int64)),
            },
        )
        found = self.state.on_time(found)
        # further behind than settle_seconds (from the stream's newest before this batch):
        # the companions it needs may be gone
        settle = self.context.limits.settle_seconds * MICROS
        fresh = pc.greater_equal(found.column("ts"), (mark or 0) - settle)
        if mark is not None and not pc.all(fresh).as_py():
            late = found.num_rows - int(pc.sum(fresh).as_py() or 0)
            self.unjudged += late
            logger.debug("%d events too late for %s's companions: dropped", late, rule.id)
            found = found.filter(fresh)
        self._unmerged.append(found.drop_columns(["value", "row"]))
        return found

    def _judged_keys(self, batch: Batch, params: AbsenceParams, found: pa.Table) -> list[pa.Table]:
        rows = np.asarray(found.column("row").to_numpy(), dtype=np.int64)
        out = []
        for index, clause in enumerate(params.clauses):
            pairs = key_rows(batch, rows, clause.on)
            take = pa.array(pairs.owner)
            n = len(pairs.owner)
            out.append(
                pa.table(
                    {
                        "serial": found.column("serial").take(take),
                        "clause": pa.repeat(pa.scalar(index, pa.int32()), n),
                        "key": pairs.key,
                        "ts": found.column("ts").take(take),
                    },
                    schema=_KEYS,
                )
            )
        return out

    def _keep(self, fresh: pa.Table, keys: list[pa.Table]) -> None:
        """Add judged events and their keys (the per-group cap is applied by ``_capped``)."""
        self.judged = pa.concat_tables([self.judged, fresh.cast(_JUDGED)])
        self.keys = pa.concat_tables([self.keys, *keys])

    def _capped(self, judged: pa.Table, *, ordered: bool = False) -> pa.Table:
        """The earliest ``max_distinct`` judged events of each group (``settling.earliest``).

        Applied to every verdict and at every compaction, so which events count never
        depends on when the cap was last enforced.
        """
        return earliest(judged, self.context.limits.max_distinct, ordered=ordered)

    def _touch(self, rule: Rule, clause: Companion, ts: pa.Array) -> None:
        """Mark dirty the rule's groups whose events a companion at these times can change."""
        groups = self.state.groups
        if not groups.num_rows or not len(ts):
            return
        low = int(pc.min(ts).as_py()) - clause.after * MICROS
        high = int(pc.max(ts).as_py()) + clause.before * MICROS
        mine = pc.and_(
            pc.equal(groups.column("rule_id"), rule.id),
            pc.and_(
                pc.less_equal(groups.column("window"), high),
                pc.greater(groups.column("window_end"), low),
            ),
        )
        dirty = pc.or_(groups.column("dirty"), mine)
        self.state.groups = groups.set_column(
            groups.schema.get_field_index("dirty"), "dirty", dirty
        )

    def _expire(self, marks: Mapping[str, int]) -> None:
        """Drop companions no pending or future judged event can reach, and bound the table.

        A pending event at ``t`` looks back to ``t - before``; a judged event still to
        come is at most ``settle_seconds`` behind its stream's newest (older ones are
        dropped on arrival), so each clause keeps companions from the earlier of its
        rule's oldest pending event and that edge, less its own ``before``.
        """
        if self.companions.num_rows:
            settle = self.context.limits.settle_seconds * MICROS
            oldest = self._oldest
            names: list[str] = []
            floors: list[int] = []
            for rule in self.rules.values():
                params = rule.params
                assert isinstance(params, AbsenceParams)  # noqa: S101
                mark = marks.get(params.stream)
                edge = min(mark - settle, oldest.get(rule.id, mark)) if mark is not None else None
                for index, clause in enumerate(params.clauses):
                    names.append(f"{rule.id}/{index}")
                    floors.append(
                        edge - clause.before * MICROS
                        if edge is not None
                        else int(np.iinfo(np.int64).min)
                    )
            cell = pc.binary_join_element_wise(
                self.companions.column("rule_id"),
                pc.cast(self.companions.column("clause"), pa.string()),
                "/",
            )
            index = pc.index_in(cell, value_set=pa.array(names, pa.string()))
            table = np.array([*floors, np.iinfo(np.int64).min], dtype=np.int64)
            floor = table[np.asarray(index.fill_null(len(names)).to_numpy(zero_copy_only=False))]
            ts = np.asarray(self.companions.column("ts").to_numpy(), dtype=np.int64)
            self.companions = self.companions.filter(pa.array(ts >= floor))
        excess = self.companions.num_rows - self.context.limits.max_groups
        if excess > 0:
            if not self._warned:
                logger.warning(
                    "absence state full: oldest companions dropped beyond rules.max_groups = "
                    "%d; verdicts now depend on input order",
                    self.context.limits.max_groups,
                )
                self._warned = True
            order = pc.sort_indices(self.companions, sort_keys=[("ts", "descending")])
            self.companions = self.companions.take(order.slice(0, self.context.limits.max_groups))

    def _oldest_pending(self) -> dict[str, int]:
        """Per rule, the time of its oldest judged event still without a verdict."""
        pending = self.judged
        if not pending.num_rows:
            return {}
        oldest = pending.group_by("rule_id", use_threads=False).aggregate([("ts", "min")])
        return dict(
            zip(
                oldest.column("rule_id").to_pylist(),
                oldest.column("ts_min").to_pylist(),
                strict=True,
            )
        )

    def _bounds(self, marks: Mapping[str, int]) -> dict[str, int]:
        """Per rule, up to when waiting events can be settled (``settling.ripe_before``)."""
        limits = self.context.limits
        return ripe_before(
            self.rules.values(),
            marks,
            settle_us=limits.settle_seconds * MICROS,
            lateness_us=limits.lateness_seconds * MICROS,
        )

    def _verdicts(self, judged: pa.Table) -> npt.NDArray[np.bool_]:
        """Whether each waiting event counts (``settling.verdicts``)."""
        return verdicts(judged, self.keys, self.companions, self.rules)

    def _ripe(self, marks: Mapping[str, int]) -> bool:
        """Whether half the waiting events (and at least ``COMPACT_AT``) can be settled.

        Settling then, besides when the tables doubled, keeps the waiting events within
        about twice what ``after`` and ``settle_seconds`` need, at one pass over the state
        per halving: a constant cost per event. Counting is one comparison per event.
        """
        if self.judged.num_rows < COMPACT_AT:
            return False
        bounds = self._bounds(marks)
        if not any(bounds.get(r, np.iinfo(np.int64).min) >= t for r, t in self._oldest.items()):
            return False
        return int(ripe_mask(self.judged, bounds).sum()) * 2 >= int(self.judged.num_rows)

    def _settle(self, marks: Mapping[str, int]) -> None:
        """Take the verdict of every pending event whose companions are all in.

        One that counts moves to ``settled``; one that does not is dropped, and so is a
        group left empty that was never emitted. Their keys go when ``_compact``, the only
        caller, drops the keys of every event no longer waiting.
        """
        if not self.judged.num_rows:
            return
        ripe = ripe_mask(self.judged, self._bounds(marks))
        if not ripe.any():
            return
        rows = self.judged.filter(pa.array(ripe))
        counts = self._verdicts(rows)
        self.judged = self.judged.filter(pa.array(~ripe))
        if counts.any():
            counted = rows.filter(pa.array(counts)).select(_SETTLED.names)
            self.settled = pa.concat_tables([self.settled, counted])
            if self.settled.num_rows >= max(2 * self._settled_capped, COMPACT_AT):
                self.settled = self._capped(self.settled)
                self._settled_capped = self.settled.num_rows
        self._forget_empty(rows.column("gid").filter(pa.array(~counts)).combine_chunks())

    def _bound_pending(self) -> None:
        """Drop the oldest pending events beyond ``max_pending`` (a companion stream lags)."""
        excess = self.judged.num_rows - self.context.limits.max_pending
        if excess <= 0:
            return
        if not self._warned_pending:
            logger.warning(
                "absence rules: more than rules.max_pending = %d events wait for their "
                "companion streams; the oldest are dropped unjudged (a companion stream lags "
                "far behind: read the streams of one period together)",
                self.context.limits.max_pending,
            )
            self._warned_pending = True
        self.unjudged += excess
        ts = np.asarray(self.judged.column("ts").to_numpy(), dtype=np.int64)
        drop = np.zeros(self.judged.num_rows, dtype=bool)
        drop[np.argsort(ts, kind="stable")[:excess]] = True
        gone = self.judged.column("gid").filter(pa.array(drop)).combine_chunks()
        self.judged = self.judged.filter(pa.array(~drop))
        self._forget_empty(gone)

    def _forget_empty(self, gids: pa.Array) -> None:
        """Forget groups among ``gids`` left with no judged event and never emitted."""
        if not len(gids):
            return
        candidates = pc.unique(gids)
        # hash the few candidates, not the whole state
        held = [
            table.column("gid").filter(pc.is_in(table.column("gid"), value_set=candidates))
            for table in (self.judged, self.settled)
        ]
        kept = pa.chunked_array([c for h in held for c in h.chunks], pa.string())
        candidates = candidates.filter(
            pc.invert(pc.is_in(candidates, value_set=kept.combine_chunks()))
        )
        groups = self.state.groups
        emitted = groups.filter(
            pc.and_(pc.is_in(groups.column("gid"), value_set=candidates), groups.column("emitted"))
        ).column("gid")
        empty = candidates.filter(
            pc.invert(pc.is_in(candidates, value_set=emitted.combine_chunks()))
        )
        if len(empty):
            self.state.remove(empty)

    def forget(self, gids: pa.Array) -> None:
        """Drop closed groups with their judged events and keys."""
        super().forget(gids)
        if self.settled.num_rows:
            self.settled = self.settled.filter(
                pc.invert(pc.is_in(self.settled.column("gid"), value_set=gids))
            )
        if not self.judged.num_rows:
            return
        gone = pc.is_in(self.judged.column("gid"), value_set=gids)
        serials = self.judged.column("serial").filter(gone).combine_chunks()
        self.judged = self.judged.filter(pc.invert(gone))
        self.keys = self.keys.filter(
            pc.invert(pc.is_in(self.keys.column("serial"), value_set=serials))
        )

    # -- judging --------------------------------------------------------------------------

    def _emit(self, groups: pa.Table) -> pa.Table | None:
        """Replace each group's count and times by those of its counted events, then emit."""
        if not groups.num_rows:
            return None
        counted = self.counted(groups.column("gid"))
        # counted is sorted by group, time and id: "first" is the earliest event
        stats = counted.group_by("gid", use_threads=False).aggregate(
            [("ts", "min"), ("ts", "max"), ("ts", "count"), ("id", "first")]
        )
        index = pc.index_in(groups.column("gid"), value_set=stats.column("gid"))
        found = pc.is_valid(index)
        at = index.fill_null(0)
        updated = groups
        for target, source, default in (
            ("count", "ts_count", pa.repeat(pa.scalar(0, pa.int64()), groups.num_rows)),
            ("first_ts", "ts_min", groups.column("first_ts")),
            ("last_ts", "ts_max", groups.column("last_ts")),
            ("first_id", "id_first", groups.column("first_id")),
        ):
            kind = groups.schema.field(target).type
            value = (
                pc.if_else(found, pc.cast(stats.column(source).take(at), kind), default)
                if stats.num_rows
                else default
            )
            updated = updated.set_column(updated.schema.get_field_index(target), target, value)
        self._current = counted
        try:
            return super()._emit(updated)
        finally:
            self._current = None

    def counted(self, gids: pa.Array | pa.ChunkedArray) -> pa.Table:
        """The judged events of some groups that count: settled, or judged now.

        Sorted by group, time and id.
        """
        pending = self.judged.filter(pc.is_in(self.judged.column("gid"), value_set=gids))
        if pending.num_rows:
            pending = pending.filter(pa.array(self._verdicts(pending)))
        settled = self.settled.filter(pc.is_in(self.settled.column("gid"), value_set=gids))
        both = pa.concat_tables([settled, pending.select(_SETTLED.names)])
        return self._capped(both, ordered=True)

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Groups whose counted events reach ``min_count`` (and ``min_distinct``)."""
        counts = np.asarray(groups.column("count").to_numpy(zero_copy_only=False))
        ok = (counts >= 1) & (counts >= self.per_rule(groups, "min_count"))
        wanted = np.nan_to_num(self.per_rule(groups, "min_distinct"), nan=0.0)
        if (wanted > 0).any():
            seen = self._distinct(groups.column("gid"))
            ok &= np.array([seen.get(g, 0) for g in groups.column("gid").to_pylist()]) >= wanted
        return ok, self.per_rule(groups, "confidence")

    def _distinct(self, gids: pa.Array | pa.ChunkedArray) -> dict[str, int]:
        counted = self._current if self._current is not None else self.counted(gids)
        rows = counted.filter(pc.is_valid(counted.column("value")))
        unique = rows.group_by(["gid", "value"], use_threads=False).aggregate([])
        per = unique.group_by("gid", use_threads=False).aggregate([("value", "count")])
        return dict(
            zip(per.column("gid").to_pylist(), per.column("value_count").to_pylist(), strict=True)
        )

    def evidence_of(self, gids: pa.Array | pa.ChunkedArray) -> dict[str, list[str]]:
        """The earliest ``max_evidence`` counted events of each group."""
        counted = self._current if self._current is not None else self.counted(gids)
        mine = counted.filter(pc.is_in(counted.column("gid"), value_set=gids))
        out: dict[str, list[str]] = {}
        for gid, event in zip(
            mine.column("gid").to_pylist(), mine.column("id").to_pylist(), strict=True
        ):
            kept = out.setdefault(gid, [])
            if len(kept) < self.context.limits.max_evidence:
                kept.append(event)
        return out

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Counts, times and the distinct count of counted events."""
        stats = super().statistics_of(groups)
        seen = self._distinct(groups.column("gid"))
        cap = self.context.limits.max_distinct
        for item, gid, rule_id in zip(
            stats,
            groups.column("gid").to_pylist(),
            groups.column("rule_id").to_pylist(),
            strict=True,
        ):
            n = seen.get(gid, 0)
            params = self.rules[rule_id].params
            assert isinstance(params, AbsenceParams)  # noqa: S101
            item.update(distinct=f"{n}+" if n >= cap else n, min_count=params.min_count)
        return stats

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, pa.Table]:
        """Group state, watermarks, judged events, their keys and the companions."""
        self._merge()
        return {
            **super().snapshot(),
            "absence.judged": self.judged,
            "absence.settled": self.settled,
            "absence.keys": self.keys,
            "absence.companions": self.companions,
        }

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        super().restore(tables)
        rules = list(self.rules)
        for name, schema in (
            ("judged", _JUDGED),
            ("settled", _SETTLED),
            ("keys", _KEYS),
            ("companions", COMPANIONS),
        ):
            table = tables.get(f"absence.{name}", schema.empty_table())
            table = table.select(schema.names).cast(schema)
            setattr(self, name, table if name == "keys" else only_rules(table, rules))
        # keys carry no rule: those of events dropped above go with them
        self.keys = self.keys.filter(
            pc.is_in(
                self.keys.column("serial"),
                value_set=self.judged.column("serial").combine_chunks(),
            )
        )
        if self.judged.num_rows:
            self._serial = int(pc.max(self.judged.column("serial")).as_py()) + 1
        self._oldest = self._oldest_pending()
