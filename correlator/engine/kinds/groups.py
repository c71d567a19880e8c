"""Per-group state shared by the counting kinds (match, threshold, new, rare, absence).

Three Arrow tables, keyed by group id (rule, stream, window, key):

* ``groups``: one row per group: its first event (earliest time, then smallest event id),
  last time, event count, the sum of a per-event amount (``total``: bytes, for threshold's
  ``sum_field``; zero where a kind adds none), and whether it changed since the last
  emission (``dirty``) or was ever emitted (``emitted``, so that a group that stops
  qualifying can be retracted);
* ``evidence``: the ``max_evidence`` earliest event ids of each group;
* ``distinct``: up to ``max_distinct`` distinct values of each group (the smallest).

Every merge keeps a minimum, a maximum, a sum or the smallest values, so the state after a
set of events is the same whatever the order or the batches they came in. A merge touches
only the groups present in the batch (an ``is_in`` over the state, then a sort of those
groups' rows); state is bounded by ``Limits`` and by windows closing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.kinds.base import HIT_SCHEMA, INFO_COLUMNS, Limits, only_rules
from correlator.engine.window import group_starts, rank_in_group

logger = logging.getLogger(__name__)

GROUP_SCHEMA: Final = pa.schema(
    [
        HIT_SCHEMA.field("gid"),
        HIT_SCHEMA.field("window"),
        HIT_SCHEMA.field("window_end"),
        *(HIT_SCHEMA.field(c) for c in INFO_COLUMNS),
        pa.field("first_ts", pa.int64()),
        pa.field("last_ts", pa.int64()),
        pa.field("count", pa.int64()),
        pa.field("total", pa.float64()),
        pa.field("first_id", pa.string()),
        pa.field("dirty", pa.bool_()),
        pa.field("emitted", pa.bool_()),
    ]
)
EVIDENCE_SCHEMA: Final = pa.schema(
    [pa.field("gid", pa.string()), pa.field("ts", pa.int64()), pa.field("id", pa.string())]
)
DISTINCT_SCHEMA: Final = pa.schema([pa.field("gid", pa.string()), pa.field("value", pa.string())])
#: Columns taken from a group's first event; ``discount`` is an AND over all its events
#: instead: one piece of evidence from inside makes the whole group count in full.
_FIRST: Final = tuple(c for c in ("window", "window_end", *INFO_COLUMNS) if c != "discount")


class GroupState:
    """The three tables, and the merges that keep them bounded and order-independent."""

    def __init__(self, limits: Limits, watermarks: Mapping[str, int] | None = None) -> None:
        self.limits = limits
        self.watermarks = watermarks if watermarks is not None else {}
        self.groups = GROUP_SCHEMA.empty_table()
        self.evidence = EVIDENCE_SCHEMA.empty_table()
        self.distinct = DISTINCT_SCHEMA.empty_table()
        self.dropped = 0
        self.late = 0

    def on_time(self, hits: pa.Table) -> pa.Table:
        """Hits whose window is still open.

        A window closes ``lateness`` after its end, by the newest event time of its stream;
        a straggler for a closed (emitted, forgotten) window is dropped and counted, never
        turned into a partial finding.
        """
        if not hits.num_rows or not self.watermarks:
            return hits
        streams = list(self.watermarks)
        marks = np.array([self.watermarks[s] for s in streams], dtype=np.int64)
        index = pc.index_in(hits.column("stream"), value_set=pa.array(streams, pa.string()))
        position = np.asarray(index.fill_null(-1).to_numpy(zero_copy_only=False))
        mark = np.where(position >= 0, marks[np.maximum(position, 0)], np.iinfo(np.int64).min)
        ends = np.asarray(hits.column("window_end").to_numpy(zero_copy_only=False))
        starts = np.asarray(hits.column("window").to_numpy(zero_copy_only=False))
        lateness = self.limits.lateness_seconds * 1_000_000
        late = (ends > starts) & (ends + lateness <= mark)
        if not late.any():
            return hits
        self.late += int(late.sum())
        logger.debug("%d events arrived after their window closed: dropped", int(late.sum()))
        return hits.filter(pa.array(~late))

    def add(
        self, hits: pa.Table, values: pa.Array | None = None, amounts: pa.Array | None = None
    ) -> None:
        """Fold hit rows into the state.

        ``values`` (one per hit) are counted distinctly; ``amounts`` (one number per hit,
        null counting as zero) are summed into the group's ``total``.
        """
        if values is not None:
            hits = hits.append_column("__value", values)
        amount = (
            pc.fill_null(pc.cast(amounts, pa.float64()), 0.0)
            if amounts is not None
            else pa.repeat(pa.scalar(0.0), hits.num_rows)
        )
        hits = self.on_time(hits.append_column("__amount", amount))
        if values is not None:
            values = hits.column("__value").combine_chunks()
            hits = hits.drop_columns(["__value"])
        if not hits.num_rows:
            return
        order = pc.sort_indices(
            hits, sort_keys=[("gid", "ascending"), ("ts", "ascending"), ("id", "ascending")]
        )
        hits = hits.take(order)
        aggregated = hits.group_by("gid", use_threads=False).aggregate(
            [
                ("ts", "min"),
                ("ts", "max"),
                ("ts", "count"),
                ("__amount", "sum"),
                ("id", "first"),
                ("discount", "all"),
                *((c, "first") for c in _FIRST),
            ]
        )
        fresh = (
            pa.table(
                {
                    "gid": aggregated.column("gid"),
                    **{c: aggregated.column(f"{c}_first") for c in _FIRST},
                    "discount": aggregated.column("discount_all"),
                    "first_ts": aggregated.column("ts_min"),
                    "last_ts": aggregated.column("ts_max"),
                    "count": pc.cast(aggregated.column("ts_count"), pa.int64()),
                    "total": aggregated.column("__amount_sum"),
                    "first_id": aggregated.column("id_first"),
                    "dirty": pa.repeat(pa.scalar(value=True), aggregated.num_rows),
                    "emitted": pa.repeat(pa.scalar(value=False), aggregated.num_rows),
                }
            )
            .select(GROUP_SCHEMA.names)
            .cast(GROUP_SCHEMA)
        )
        gids = fresh.column("gid")
        self.groups = self._merge_groups(fresh, gids)
        evidence = _capped(hits.select(["gid", "ts", "id"]), self.limits.max_evidence)
        self.evidence = _merge_capped(
            self.evidence, evidence, gids, ["ts", "id"], self.limits.max_evidence
        )
        if values is not None:
            pairs = pa.table({"gid": hits.column("gid"), "value": values.take(order)})
            pairs = pairs.filter(pc.is_valid(pairs.column("value")))
            unique = pairs.group_by(["gid", "value"], use_threads=False).aggregate([])
            self.distinct = _merge_capped(
                self.distinct,
                unique.select(["gid", "value"]).cast(DISTINCT_SCHEMA),
                gids,
                ["value"],
                self.limits.max_distinct,
                unique_rows=True,
            )
        self._bound()

    def _merge_groups(self, fresh: pa.Table, gids: pa.Array) -> pa.Table:
        touched = pc.is_in(self.groups.column("gid"), value_set=gids)
        old = self.groups.filter(touched)
        rest = self.groups.filter(pc.invert(touched))
        if not old.num_rows:
            return pa.concat_tables([rest, fresh])
        both = pa.concat_tables([old, fresh])
        both = both.take(
            pc.sort_indices(
                both,
                sort_keys=[
                    ("gid", "ascending"),
                    ("first_ts", "ascending"),
                    ("first_id", "ascending"),
                ],
            )
        )
        merged = both.group_by("gid", use_threads=False).aggregate(
            [
                *((c, "first") for c in _FIRST),
                ("first_ts", "min"),
                ("last_ts", "max"),
                ("count", "sum"),
                ("total", "sum"),
                ("first_id", "first"),
                ("emitted", "any"),
                ("discount", "all"),
            ]
        )
        table = (
            pa.table(
                {
                    "gid": merged.column("gid"),
                    **{c: merged.column(f"{c}_first") for c in _FIRST},
                    "discount": merged.column("discount_all"),
                    "first_ts": merged.column("first_ts_min"),
                    "last_ts": merged.column("last_ts_max"),
                    "count": merged.column("count_sum"),
                    "total": merged.column("total_sum"),
                    "first_id": merged.column("first_id_first"),
                    "dirty": pa.repeat(pa.scalar(value=True), merged.num_rows),
                    "emitted": merged.column("emitted_any"),
                }
            )
            .select(GROUP_SCHEMA.names)
            .cast(GROUP_SCHEMA)
        )
        return pa.concat_tables([rest, table])

    def _bound(self) -> None:
        """Drop the oldest groups beyond ``max_groups`` (logged: results become partial)."""
        excess = self.groups.num_rows - self.limits.max_groups
        if excess <= 0:
            return
        order = pc.sort_indices(
            self.groups, sort_keys=[("window_end", "ascending"), ("last_ts", "ascending")]
        )
        gone = self.groups.take(order.slice(0, excess)).column("gid")
        if not self.dropped:  # once per state: results are partial from here on
            logger.warning(
                "rule state full: oldest groups dropped beyond rules.max_groups = %d; results "
                "now depend on input order (raise the limit or narrow the rules)",
                self.limits.max_groups,
            )
        self.dropped += excess
        self.remove(gone)

    def remove(self, gids: pa.Array) -> None:
        """Forget groups."""
        for name in ("groups", "evidence", "distinct"):
            table: pa.Table = getattr(self, name)
            if table.num_rows:
                keep = pc.invert(pc.is_in(table.column("gid"), value_set=gids))
                setattr(self, name, table.filter(keep))

    def closed(self, watermarks: Mapping[str, int], lateness_us: int) -> pa.Table:
        """Groups whose window ended more than ``lateness`` before their stream's watermark."""
        if not self.groups.num_rows or not watermarks:
            return GROUP_SCHEMA.empty_table()
        streams = list(watermarks)
        marks = np.array([watermarks[s] for s in streams], dtype=np.int64)
        index = pc.index_in(self.groups.column("stream"), value_set=pa.array(streams))
        position = np.asarray(index.fill_null(-1).to_numpy(zero_copy_only=False))
        mark = np.where(position >= 0, marks[np.maximum(position, 0)], np.iinfo(np.int64).min)
        ends = self.groups.column("window_end").to_numpy()
        windowed = ends > self.groups.column("window").to_numpy()
        done = windowed & (ends + lateness_us <= mark)
        return self.groups.filter(pa.array(done))

    def dirty(self) -> pa.Table:
        """Groups changed since they were last emitted."""
        if not self.groups.num_rows:
            return self.groups
        return self.groups.filter(self.groups.column("dirty"))

    def mark(self, evaluated: pa.Array, emitted: pa.Array) -> None:
        """Clear ``dirty`` on evaluated groups; set ``emitted`` where a finding went out."""
        if not self.groups.num_rows or not len(evaluated):
            return
        gids = self.groups.column("gid")
        was = pc.is_in(gids, value_set=evaluated)
        now = pc.is_in(gids, value_set=emitted)
        dirty = pc.and_(self.groups.column("dirty"), pc.invert(was))
        sent = pc.or_(pc.and_(self.groups.column("emitted"), pc.invert(was)), now)
        self.groups = self.groups.set_column(
            GROUP_SCHEMA.get_field_index("dirty"), "dirty", dirty
        ).set_column(GROUP_SCHEMA.get_field_index("emitted"), "emitted", sent)

    def evidence_of(self, gids: pa.Array) -> dict[str, list[str]]:
        """The kept event ids of some groups, earliest first."""
        rows = self.evidence.filter(pc.is_in(self.evidence.column("gid"), value_set=gids))
        out: dict[str, list[str]] = {}
        for gid, event in zip(
            rows.column("gid").to_pylist(), rows.column("id").to_pylist(), strict=True
        ):
            out.setdefault(gid, []).append(event)
        return out

    def distinct_counts(self, gids: pa.Array) -> dict[str, int]:
        """Distinct values counted (up to ``max_distinct``) per group."""
        rows = self.distinct.filter(pc.is_in(self.distinct.column("gid"), value_set=gids))
        counted = rows.group_by("gid").aggregate([("value", "count")])
        return dict(
            zip(
                counted.column("gid").to_pylist(),
                counted.column("value_count").to_pylist(),
                strict=True,
            )
        )

    def snapshot(self, prefix: str) -> dict[str, pa.Table]:
        """The tables, named ``<prefix>.groups``, ``<prefix>.evidence``, ``<prefix>.distinct``."""
        return {
            f"{prefix}.groups": self.groups,
            f"{prefix}.evidence": self.evidence,
            f"{prefix}.distinct": self.distinct,
        }

    def restore(self, tables: Mapping[str, pa.Table], prefix: str, rules: list[str]) -> None:
        """Take back tables from ``snapshot``, keeping only the groups of ``rules``."""
        groups = tables.get(f"{prefix}.groups")
        if groups is None:
            return
        if "total" not in groups.column_names:  # a state saved before sums were kept
            groups = groups.append_column("total", pa.repeat(pa.scalar(0.0), groups.num_rows))
        self.groups = only_rules(groups.select(GROUP_SCHEMA.names).cast(GROUP_SCHEMA), rules)
        known = self.groups.column("gid")
        for name, schema in (("evidence", EVIDENCE_SCHEMA), ("distinct", DISTINCT_SCHEMA)):
            table = tables.get(f"{prefix}.{name}", schema.empty_table()).cast(schema)
            setattr(self, name, table.filter(pc.is_in(table.column("gid"), value_set=known)))


def _capped(table: pa.Table, cap: int) -> pa.Table:
    """The first ``cap`` rows of each gid of a table sorted by gid."""
    if not table.num_rows:
        return table
    rank = rank_in_group(group_starts(table.column("gid").combine_chunks()))
    return table.filter(pa.array(rank < cap))


def _merge_capped(
    state: pa.Table,
    fresh: pa.Table,
    gids: pa.Array,
    order: list[str],
    cap: int,
    *,
    unique_rows: bool = False,
) -> pa.Table:
    """Merge rows of touched groups, keep the ``cap`` smallest by ``order`` per group."""
    touched = pc.is_in(state.column("gid"), value_set=gids)
    both = pa.concat_tables([state.filter(touched), fresh])
    if unique_rows:
        both = both.group_by(both.column_names, use_threads=False).aggregate([])
    keys = [("gid", "ascending"), *((c, "ascending") for c in order)]
    both = both.take(pc.sort_indices(both, sort_keys=keys))
    return pa.concat_tables([state.filter(pc.invert(touched)), _capped(both, cap)]).cast(
        state.schema
    )
