"""``sequence``: ordered steps joined by a key within a maximum span, across streams.

Each step names a stream, predicates, the fields of its join key (``by``, the same number
in every step) and how many events it needs (``min_count``). A sequence completes at an
event of the last step when, going backwards, every earlier step has ``min_count`` events
that all come before the events of the step after it, and the first of them lies within
``maxspan`` of the completing event (EQL's ``sequence by … with maxspan``, with counts).

Completion is computed for every key touched by a batch, vectorised over keys: per step,
each event's best (latest) possible start is found with one ``searchsorted`` over the
previous step's completions and a running maximum. State keeps the latest ``max_steps``
events per key and step; events too old to start a sequence any more are dropped. Each
window (default a day) with a completion gives one finding per key; its evidence is the
completing events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from correlator.engine.batch import Batch
from correlator.engine.kinds.base import (
    GID_SEPARATOR,
    HIT_SCHEMA,
    Context,
    KindParams,
    group_values,
    render,
)
from correlator.engine.kinds.threshold import CountingKind, base_stats
from correlator.engine.rule import Rule
from correlator.engine.spec import Predicate, predicate_fields
from correlator.engine.window import (
    MICROS,
    Duration,
    format_duration,
    group_starts,
    join_key,
    rank_in_group,
    window_start,
)

_STEPS = pa.schema(
    [
        pa.field("rule_id", pa.string()),
        pa.field("key", pa.string()),
        pa.field("step", pa.int32()),
        pa.field("ts", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("src", pa.string()),
        pa.field("dst", pa.string()),
        pa.field("src_in", pa.bool_()),
        pa.field("dst_in", pa.bool_()),
        pa.field("port", pa.int32()),
        pa.field("stream", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("session", pa.string()),
        pa.field("flow", pa.string()),
        pa.field("community", pa.string()),
        pa.field("label", pa.string()),
    ]
)

#: Per open group id, the shortest time (µs) from a sequence's start to its completion.
_TOOK = pa.schema([pa.field("gid", pa.string()), pa.field("took", pa.int64())])
_RULE_OF_GID = f"^(?P<rule>[^{GID_SEPARATOR}]*)"


class Step(BaseModel):
    """One step of a sequence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str
    where: tuple[Predicate, ...] = ()
    # join key of this step, position by position equal to the other steps' keys
    by: tuple[str, ...] = Field(min_length=1)
    min_count: int = Field(default=1, ge=1)
    # what the step's events are, for messages ("failed login"); default: the stream
    label: str | None = None


class SequenceParams(KindParams):
    """Params of ``sequence``."""

    steps: tuple[Step, ...] = Field(min_length=2)
    maxspan: Duration
    # one finding per key and window of completion
    window: Duration = 86400

    @model_validator(mode="after")
    def _same_key_width(self) -> Self:
        widths = {len(s.by) for s in self.steps}
        if len(widths) != 1:
            raise ValueError("every step's `by` needs the same number of fields")
        return self

    def fields(self) -> list[str]:
        """Every event field the params read."""
        out = super().fields()
        for step in self.steps:
            out.extend([*predicate_fields(step.where), *step.by])
        return out


class SequenceKind(CountingKind):
    """Ordered steps per join key."""

    name = "sequence"
    Params = SequenceParams
    statistics = frozenset({"count", "first", "last", "span", "window", "peer", "steps", "took"})
    default_message = "{rule}: {steps} from {host} within {took}"

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        super().__init__(rules, context)
        self.steps = _STEPS.empty_table()
        self._took: dict[str, float] = {}

    @classmethod
    def streams_of(cls, rule: Rule) -> frozenset[str]:
        """The streams of the rule's steps."""
        params = rule.params
        assert isinstance(params, SequenceParams)  # noqa: S101
        return frozenset(s.stream for s in params.steps)

    @classmethod
    def message_fields(cls, params: KindParams) -> frozenset[str]:
        """Placeholders a sequence message may use."""
        assert isinstance(params, SequenceParams)  # noqa: S101
        return cls.statistics | {"host", "allowlist", "rule", "role", "peer", *params.steps[-1].by}

    def fold(self, batch: Batch) -> None:
        """Add the batch's step events, then recompute completions of the keys touched."""
        touched: dict[str, set[str]] = {}
        parts = []
        for rule in self.rules_on(batch.stream):
            params = rule.params
            assert isinstance(params, SequenceParams)  # noqa: S101
            last = len(params.steps) - 1
            for index, step in enumerate(params.steps):
                if step.stream != batch.stream:
                    continue
                rows = np.flatnonzero(batch.where(step.where))
                if not len(rows):
                    continue
                part = _step_rows(
                    batch, rule, index, step, rows, label=index == last, context=self.context
                )
                parts.append(part)
                touched.setdefault(rule.id, set()).update(part.column("key").to_pylist())
        if not parts:
            return
        fresh = pa.concat_tables(parts)
        # complete before trimming to max_steps: one batch may hold more events of a key
        # than are kept, and its earliest ones may be the ones that complete a sequence
        known = pa.concat_tables([self.steps, fresh])
        for rule_id, keys in touched.items():
            self._complete(self.rules[rule_id], sorted(keys), known)
        self.steps = _keep_latest(self.steps, fresh, self.context.limits.max_steps)
        self._expire()

    def _complete(self, rule: Rule, keys: list[str], steps: pa.Table) -> None:
        params = rule.params
        assert isinstance(params, SequenceParams)  # noqa: S101
        mine = steps.filter(
            pc.and_(
                pc.equal(steps.column("rule_id"), rule.id),
                pc.is_in(steps.column("key"), value_set=pa.array(keys, pa.string())),
            )
        )
        done = completions(mine, [s.min_count for s in params.steps], params.maxspan * MICROS)
        if done.num_rows:
            self._record(rule, done)

    def _record(self, rule: Rule, done: pa.Table) -> None:
        """Turn completing events into hits of their key's group."""
        params = rule.params
        assert isinstance(params, SequenceParams)  # noqa: S101
        ends = ("source", "destination") if params.entity == "both" else (params.entity,)
        tables = []
        for end in ends:
            inside = done.column("src_in" if end == "source" else "dst_in")
            rows = done.filter(inside)
            if not rows.num_rows:
                continue
            host = rows.column("src" if end == "source" else "dst")
            peer = rows.column("dst" if end == "source" else "src")
            other_in = rows.column("dst_in" if end == "source" else "src_in")
            role = "source" if end == "source" else "target"
            discount = (
                pa.repeat(pa.scalar(value=False), rows.num_rows)
                if role == "source" or not params.discount_inbound
                else pc.invert(other_in)
            )
            ts = np.asarray(rows.column("ts").to_numpy())
            window = window_start(ts, params.window)
            key = join_key([host, rows.column("label"), *_split_key(rows.column("key"), params)])
            gid = pc.binary_join_element_wise(
                rule.id,
                rows.column("stream"),
                pc.cast(pa.array(window), pa.string()),
                key,
                GID_SEPARATOR,
            )
            for gid_value, took in zip(
                gid.to_pylist(),
                pc.subtract(rows.column("ts"), rows.column("start")).to_pylist(),
                strict=True,
            ):
                self._took[gid_value] = min(self._took.get(gid_value, took), took)
            tables.append(
                pa.table(
                    {
                        "gid": gid,
                        "rule_id": rows.column("rule_id"),
                        "stream": rows.column("stream"),
                        "window": pa.array(window),
                        "window_end": pa.array(window + params.window * MICROS),
                        "key": key,
                        "ts": rows.column("ts"),
                        "id": rows.column("id"),
                        "host": host,
                        "peer": peer,
                        "port": rows.column("port"),
                        "role": pa.repeat(pa.scalar(role), rows.num_rows),
                        "discount": discount,
                        "label": rows.column("label"),
                        **{c: rows.column(c) for c in ("dataset", "session", "flow", "community")},
                        "src": rows.column("src"),
                        "dst": rows.column("dst"),
                    },
                    schema=HIT_SCHEMA,
                )
            )
        if tables:
            found = self.state.on_time(pa.concat_tables(tables))
            # completions are recomputed whole for a touched key: replace, never add twice
            self.state.remove(pc.unique(found.column("gid")))
            self.state.add(found)

    def _expire(self) -> None:
        """Drop step events too old to begin a sequence that could still complete."""
        if not self.watermarks or not self.steps.num_rows:
            return
        lateness = self.context.limits.lateness_seconds * MICROS
        spans = {
            r.id: r.params.maxspan * MICROS
            for r in self.rules.values()
            if isinstance(r.params, SequenceParams)
        }
        floor = min(self.watermarks.values()) - lateness - max(spans.values(), default=0)
        self.steps = self.steps.filter(pc.greater_equal(self.steps.column("ts"), floor))

    def statistics_of(self, groups: pa.Table) -> list[dict[str, object]]:
        """Counts, times and the step summary of emitted groups."""
        stats = base_stats(groups)
        for item, gid, rule_id in zip(
            stats,
            groups.column("gid").to_pylist(),
            groups.column("rule_id").to_pylist(),
            strict=True,
        ):
            params = self.rules[rule_id].params
            assert isinstance(params, SequenceParams)  # noqa: S101
            item["steps"] = " then ".join(
                f"{s.min_count} × {s.label or s.stream}"
                if s.min_count > 1
                else (s.label or s.stream)
                for s in params.steps
            )
            item["took"] = format_duration(self._took.pop(gid, 0) / MICROS)
        return stats

    def message(self, groups: pa.Table, row: int, stats: Mapping[str, object]) -> str:
        """The finding text of one group."""
        rule = self.rules[groups.column("rule_id")[row].as_py()]
        params = rule.params
        assert isinstance(params, SequenceParams)  # noqa: S101
        values = group_values(rule, groups.column("key")[row].as_py(), params.steps[-1].by)
        values.update(stats)
        values.update(
            peer=groups.column("peer")[row].as_py(), role=groups.column("role")[row].as_py()
        )
        return render(rule.spec.rule.message or self.default_message, values)

    def judge(self, groups: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Every recorded group holds a completed sequence."""
        return np.ones(groups.num_rows, dtype=bool), self.per_rule(groups, "confidence")

    def snapshot(self) -> dict[str, pa.Table]:
        """Group state, watermarks, step events and each open group's quickest completion."""
        took = pa.table(
            {
                "gid": pa.array(list(self._took), pa.string()),
                "took": pa.array(list(self._took.values()), pa.int64()),
            },
            schema=_TOOK,
        )
        return {**super().snapshot(), "sequence.steps": self.steps, "sequence.took": took}

    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back the state of rules still loaded."""
        super().restore(tables)
        steps = tables.get("sequence.steps", _STEPS.empty_table()).cast(_STEPS)
        keep = pc.is_in(steps.column("rule_id"), value_set=pa.array(list(self.rules)))
        self.steps = steps.filter(keep)
        # a group completed before the checkpoint and emitted after it keeps its duration
        took = tables.get("sequence.took", _TOOK.empty_table()).cast(_TOOK)
        rule_of = pc.struct_field(pc.extract_regex(took.column("gid"), _RULE_OF_GID), "rule")
        took = took.filter(pc.is_in(rule_of, value_set=pa.array(list(self.rules))))
        for gid, value in zip(
            took.column("gid").to_pylist(), took.column("took").to_pylist(), strict=True
        ):
            self._took[gid] = min(self._took.get(gid, value), value)


def _step_rows(
    batch: Batch,
    rule: Rule,
    index: int,
    step: Step,
    rows: npt.NDArray[np.int64],
    *,
    label: bool,
    context: Context,
) -> pa.Table:
    take = pa.array(rows)
    labels = context.allowlist.label(batch, rule.id) if label and context.allowlist else None
    n = len(rows)
    return pa.table(
        {
            "rule_id": pa.repeat(pa.scalar(rule.id), n),
            "key": join_key([batch.text(f).take(take) for f in step.by]),
            "step": pa.repeat(pa.scalar(index, pa.int32()), n),
            "ts": pa.array(batch.ts[rows]),
            "id": batch.text("event.id").take(take),
            "src": batch.host("source").take(take),
            "dst": batch.host("destination").take(take),
            "src_in": pa.array(batch.internal("source")[rows]),
            "dst_in": pa.array(batch.internal("destination")[rows]),
            "port": pc.cast(batch.column("destination.port").take(take), pa.int32()),
            "stream": pa.repeat(pa.scalar(batch.stream), n),
            "dataset": batch.text("event.dataset").take(take),
            "session": batch.text("zeek.session_id").take(take),
            "flow": batch.text("suricata.eve.flow_id").take(take),
            "community": batch.text("network.community_id").take(take),
            "label": labels.take(take) if labels is not None else pa.nulls(n, pa.string()),
        },
        schema=_STEPS,
    )


def _split_key(keys: pa.Array | pa.ChunkedArray, params: SequenceParams) -> list[pa.Array]:
    """The join key's parts as columns (to rebuild a group key with host and label)."""
    parts = pc.split_pattern(keys, "\x1f")
    width = len(params.steps[-1].by)
    return [pc.list_element(parts, i) for i in range(width)]


def _keep_latest(state: pa.Table, fresh: pa.Table, cap: int) -> pa.Table:
    """Add step events, keeping the ``cap`` latest per rule, key and step."""
    both = pa.concat_tables([state, fresh])
    both = both.take(
        pc.sort_indices(
            both,
            sort_keys=[
                ("rule_id", "ascending"), ("key", "ascending"), ("step", "ascending"),
                ("ts", "descending"), ("id", "descending"),
            ],
        )
    )  # fmt: skip
    group = pc.binary_join_element_wise(
        both.column("rule_id"),
        both.column("key"),
        pc.cast(both.column("step"), pa.string()),
        "\x1e",
    )
    rank = rank_in_group(group_starts(group))
    return both.filter(pa.array(rank < cap))


def completions(rows: pa.Table, counts: list[int], maxspan_us: int) -> pa.Table:
    """Events of the last step that complete the sequence, with the sequence's start.

    Args:
        rows: step events of one rule (``_STEPS`` columns), any order.
        counts: ``min_count`` of each step.
        maxspan_us: longest time from a sequence's first event to its last.

    Returns:
        The completing rows with an extra ``start`` column (µs of the first event).
    """
    if not rows.num_rows:
        return rows.append_column("start", pa.array([], pa.int64()))
    keys = pc.dictionary_encode(rows.column("key").combine_chunks())
    code = np.asarray(keys.indices.to_numpy(), dtype=np.int64)
    step = np.asarray(rows.column("step").to_numpy(), dtype=np.int64)
    ts = np.asarray(rows.column("ts").to_numpy(), dtype=np.int64)
    base = int(ts.min())
    rel = ts - base
    done_key = done_time = done_start = np.zeros(0, dtype=np.int64)
    rows_of = np.zeros(0, dtype=np.int64)
    for index, need in enumerate(counts):
        mine = np.flatnonzero(step == index)
        order = mine[np.lexsort((rel[mine], code[mine]))]
        k, t = code[order], rel[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        position = np.arange(len(order)) - np.maximum.accumulate(
            np.where(first, np.arange(len(order)), 0)
        )
        ok = position >= need - 1
        begin = np.where(ok, t[np.maximum(np.arange(len(order)) - (need - 1), 0)], 0)
        if index == 0:
            start = begin
        else:
            start = _best_start(done_key, done_time, done_start, k, begin)
            ok &= start >= 0
        ok &= (t - start) <= maxspan_us
        done_key, done_time, done_start = k[ok], t[ok], start[ok]
        rows_of = order[ok]
    chosen = rows.take(pa.array(rows_of))
    return chosen.append_column("start", pa.array(done_start + base, pa.int64()))


def _best_start(
    done_key: npt.NDArray[np.int64],
    done_time: npt.NDArray[np.int64],
    done_start: npt.NDArray[np.int64],
    key: npt.NDArray[np.int64],
    before: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Latest start among the previous step's completions of the same key before ``before``.

    -1 where there is none (completions must end strictly before ``before``).

    Times are replaced by their dense ranks so that ``key * width + rank`` orders by key,
    then time, without overflow whatever the time range.
    """
    if not len(done_key) or not len(key):
        return np.full(len(key), -1, dtype=np.int64)
    times, ranks = np.unique(np.concatenate([done_time, before]), return_inverse=True)
    done_rank, before_rank = ranks[: len(done_time)], ranks[len(done_time) :]
    starts, start_rank = np.unique(done_start, return_inverse=True)
    width = np.int64(max(len(times), len(starts)) + 1)
    order = np.lexsort((done_rank, done_key))
    dk = done_key[order]
    combined = dk * width + done_rank[order]
    # running maximum of the start per key: keys sorted, ranks below width, so no reset needed
    best_rank = np.maximum.accumulate(dk * width + start_rank[order]) - dk * width
    where = np.searchsorted(combined, key * width + before_rank, side="left") - 1
    found = (where >= 0) & (dk[np.maximum(where, 0)] == key)
    return np.where(found, starts[best_rank[np.maximum(where, 0)]], -1)
