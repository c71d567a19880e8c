"""What every rule kind shares: its params base, the context, hits and emissions.

A kind evaluates *all* the rules of its kind at once (pySigma's validate/finalize split,
per batch): ``observe`` folds a batch into per-group state, ``finish`` and window closing
turn state into emissions. An emission row becomes one finding (``engine/detector.py``).

Hits are the rows a rule selected, reduced to the columns every kind needs (group id,
time, event id, hosts, references); they are concatenated over every rule of a kind, so
one group-by per batch serves every rule, however many there are.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from correlator.engine.allowlist import Allowlist
from correlator.engine.spec import Predicate, predicate_fields
from correlator.engine.window import KEY_SEPARATOR, MICROS, Duration, join_key, window_start
from correlator.normalise.addresses import Networks

if TYPE_CHECKING:
    from correlator.engine.batch import Batch
    from correlator.engine.rule import Rule

#: Separates rule, stream, window and key inside a group id.
GID_SEPARATOR: Final = "\x1e"
#: The host part of the key of a group shared by every host.
ANY_HOST: Final = "*"


class KindParams(BaseModel):
    """Params every kind accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # which events count, ANDed (see engine/spec.py for the predicate forms)
    where: tuple[Predicate, ...] = ()
    # which end of the events the finding is about: the host that did it (source), the
    # host it was done to (destination, role "target"), or each internal end (both)
    entity: Literal["source", "destination", "both"] = "source"
    # weigh a finding on a host attacked from outside by correlation.inbound_factor: being
    # attacked is not being compromised (turn off where success is itself the compromise)
    discount_inbound: bool = True

    def fields(self) -> list[str]:
        """Every event field the params read (for lints)."""
        return predicate_fields(self.where)


class GroupedParams(KindParams):
    """Params of kinds that group events per host and window."""

    # fields that, with the host, make a group (one finding per group and window)
    group_by: tuple[str, ...] = ()
    # length of the epoch-aligned windows groups are counted in
    window: Duration = 3600

    def fields(self) -> list[str]:
        """Every event field the params read."""
        return [*super().fields(), *self.group_by]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the state a kind keeps (documented in docs/rules.md, set in ``[rules]``)."""

    max_evidence: int = 20  # event ids kept per finding
    lateness_seconds: int = 86400  # how late an event may arrive for a window still open
    max_groups: int = 200_000  # groups (or terms) kept per kind; the oldest go first
    max_timestamps: int = 2048  # connection times kept per beacon group (the latest)
    max_distinct: int = 4096  # distinct values counted per group (the smallest kept)
    max_steps: int = 64  # events kept per sequence key and step (the latest)
    settle_seconds: int = 600  # how long absence verdicts wait for companions past `after`
    max_pending: int = 250_000  # absence events waiting for a verdict, per kind


@dataclass(frozen=True, slots=True)
class Context:
    """What kinds need from the site: internal networks, allowlist, limits."""

    internal: Networks
    allowlist: Allowlist = field(default_factory=Allowlist)
    limits: Limits = field(default_factory=Limits)


EMISSION_SCHEMA: Final = pa.schema(
    [
        pa.field("rule_id", pa.string()),
        pa.field("key", pa.string()),  # unique per rule: becomes the finding id
        pa.field("ts", pa.int64()),  # µs of the first event
        pa.field("last_ts", pa.int64()),  # µs of the last event
        pa.field("host", pa.string()),
        pa.field("peer", pa.string()),
        pa.field("role", pa.string()),
        pa.field("discount", pa.bool_()),
        pa.field("events", pa.int64()),
        pa.field("event_ids", pa.list_(pa.string())),
        pa.field("first_id", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("session", pa.string()),
        pa.field("flow", pa.string()),
        pa.field("community", pa.string()),
        pa.field("src", pa.string()),
        pa.field("dst", pa.string()),
        pa.field("port", pa.int32()),
        pa.field("label", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("retract", pa.bool_()),
    ]
)

#: Columns of a hit table (one row per selected event and host).
HIT_SCHEMA: Final = pa.schema(
    [
        pa.field("gid", pa.string()),
        pa.field("rule_id", pa.string()),
        pa.field("stream", pa.string()),
        pa.field("window", pa.int64()),
        pa.field("window_end", pa.int64()),
        pa.field("key", pa.string()),
        pa.field("ts", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("host", pa.string()),
        pa.field("peer", pa.string()),
        pa.field("port", pa.int32()),
        pa.field("role", pa.string()),
        pa.field("discount", pa.bool_()),
        pa.field("label", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("session", pa.string()),
        pa.field("flow", pa.string()),
        pa.field("community", pa.string()),
        pa.field("src", pa.string()),
        pa.field("dst", pa.string()),
    ]
)
#: The hit columns that describe a group (taken from its first event).
INFO_COLUMNS: Final = tuple(
    n for n in HIT_SCHEMA.names if n not in ("gid", "ts", "id", "window", "window_end")
)


def hits(
    batch: Batch,
    rule: Rule,
    mask: npt.NDArray[np.bool_],
    *,
    group_by: Sequence[str],
    window_seconds: int | None,
    context: Context,
    extra: Mapping[str, pa.Array] | None = None,
    per_host: bool = True,
) -> pa.Table:
    """The hit rows of one rule in one batch: one per selected event and internal end.

    The group key is the host, the allowlist label and the ``group_by`` values; with
    ``window_seconds`` the group also has an epoch-aligned window. ``extra`` columns (of
    the batch's length) are carried along, after the hit columns. Without ``per_host``
    the key's host part is ``*``: one group for every host (a term new to the network).
    """
    params: KindParams = rule.params
    ends: tuple[Literal["source", "destination"], ...] = (
        ("source", "destination") if params.entity == "both" else (params.entity,)
    )
    labels = context.allowlist.label(batch, rule.id) if context.allowlist else None
    parts = []
    for end in ends:
        other: Literal["source", "destination"] = "destination" if end == "source" else "source"
        rows = np.flatnonzero(mask & batch.internal(end))
        if not len(rows):
            continue
        take = pa.array(rows)
        host = batch.host(end).take(take)
        peer = batch.host(other).take(take)
        role = "source" if end == "source" else "target"
        discount = (
            np.zeros(len(rows), dtype=bool)
            if role == "source" or not params.discount_inbound
            else ~batch.internal(other)[rows]
        )
        label = labels.take(take) if labels is not None else pa.nulls(len(rows), pa.string())
        owner = host if per_host else pa.repeat(pa.scalar(ANY_HOST), len(rows))
        key = join_key([owner, label, *(batch.text(f).take(take) for f in group_by)])
        ts = batch.ts[rows]
        window = (
            window_start(ts, window_seconds)
            if window_seconds is not None
            else np.zeros(len(rows), dtype=np.int64)
        )
        width = np.int64((window_seconds or 0) * MICROS)
        gid = pc.binary_join_element_wise(
            rule.id, batch.stream, pc.cast(pa.array(window), pa.string()), key, GID_SEPARATOR
        )
        columns = {
            "gid": gid,
            "rule_id": pa.repeat(pa.scalar(rule.id), len(rows)),
            "stream": pa.repeat(pa.scalar(batch.stream), len(rows)),
            "window": pa.array(window, pa.int64()),
            "window_end": pa.array(window + width, pa.int64()),
            "key": key,
            "ts": pa.array(ts, pa.int64()),
            "id": batch.text("event.id").take(take),
            "host": host,
            "peer": peer,
            "port": pc.cast(batch.column("destination.port").take(take), pa.int32()),
            "role": pa.repeat(pa.scalar(role), len(rows)),
            "discount": pa.array(discount, pa.bool_()),
            "label": label,
            "dataset": batch.text("event.dataset").take(take),
            "session": batch.text("zeek.session_id").take(take),
            "flow": batch.text("suricata.eve.flow_id").take(take),
            "community": batch.text("network.community_id").take(take),
            "src": batch.text("source.ip").take(take),
            "dst": batch.text("destination.ip").take(take),
        }
        table = pa.table(columns, schema=HIT_SCHEMA)
        for name, values in (extra or {}).items():
            table = table.append_column(name, values.take(take))
        parts.append(table)
    if not parts:
        schema = HIT_SCHEMA
        for name, values in (extra or {}).items():
            schema = schema.append(pa.field(name, values.type))
        return schema.empty_table()
    return pa.concat_tables(parts)


def key_values(key: str) -> list[str | None]:
    """The parts of a group key: host, allowlist label, then the ``group_by`` values."""
    return [None if p == "\x00" else p for p in key.split(KEY_SEPARATOR)]


_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_@][A-Za-z0-9_.@]*)(?::([^{}]*))?\}")


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``{name}`` and ``{name:spec}`` placeholders (dotted field names allowed).

    Raises:
        KeyError: a placeholder has no value (lints catch this before a run).
    """

    def fill(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        spec = match.group(2)
        if value is None:
            return "-"
        return format(value, spec) if spec else str(value)

    return _PLACEHOLDER.sub(fill, template)


def placeholders(template: str) -> list[str]:
    """The placeholder names of a message template."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def group_values(rule: Rule, key: str, group_by: Sequence[str]) -> dict[str, object]:
    """Message values of a group: its ``group_by`` fields by name, host and label."""
    parts = key_values(key)
    values: dict[str, object] = {"host": parts[0], "allowlist": parts[1]}
    values.update(zip(group_by, parts[2:], strict=False))
    values["rule"] = rule.name
    return values


class Kind(ABC):
    """Evaluates every rule of one kind.

    Subclasses set ``name`` (the key in ``engine/registry.py``), ``Params`` (the params
    model) and ``statistics`` (the message placeholders it fills besides the group fields).
    """

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]]
    statistics: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, rules: Sequence[Rule], context: Context) -> None:
        self.rules = {r.id: r for r in rules}
        self.context = context

    @classmethod
    def streams_of(cls, rule: Rule) -> frozenset[str]:
        """The streams a rule of this kind reads."""
        return frozenset(rule.spec.rule.data_sources)

    @classmethod
    def message_fields(cls, params: KindParams) -> frozenset[str]:
        """Placeholders a message of this rule may use."""
        grouped = params.group_by if isinstance(params, GroupedParams) else ()
        return cls.statistics | {"host", "allowlist", "rule", "role", "peer", *grouped}

    @property
    def streams(self) -> frozenset[str]:
        """Every stream read by this kind's rules."""
        return frozenset().union(*(self.streams_of(r) for r in self.rules.values()))

    @abstractmethod
    def observe(self, batch: Batch) -> pa.Table | None:
        """Fold a batch in; emissions of groups whose window closed, if any."""

    @abstractmethod
    def finish(self) -> pa.Table | None:
        """Emissions of every group changed since the last call."""

    @abstractmethod
    def snapshot(self) -> dict[str, pa.Table]:
        """The state, as named Arrow tables."""

    @abstractmethod
    def restore(self, tables: Mapping[str, pa.Table]) -> None:
        """Take back a state from ``snapshot`` (tables of unknown rules are dropped)."""


def emissions(columns: dict[str, pa.Array | list[object]]) -> pa.Table:
    """An emission table from columns (missing ones null)."""
    n = len(next(iter(columns.values())))
    arrays = []
    for spec in EMISSION_SCHEMA:
        value = columns.get(spec.name)
        if value is None:
            arrays.append(pa.nulls(n, spec.type))
        elif isinstance(value, list):
            arrays.append(pa.array(value, spec.type))
        else:
            arrays.append(pc.cast(value, spec.type))
    return pa.Table.from_arrays(arrays, schema=EMISSION_SCHEMA)


def seconds(micro: float) -> float:
    """Microseconds to seconds."""
    return micro / MICROS


def only_rules(table: pa.Table, rule_ids: Sequence[str]) -> pa.Table:
    """Rows of a state table that belong to known rules (``rule_id`` column)."""
    if not table.num_rows:
        return table
    keep = pc.is_in(table.column("rule_id"), value_set=pa.array(list(rule_ids), pa.string()))
    return table.filter(keep)


def field_list(fields: Sequence[str]) -> list[str]:
    """Distinct field names, in order."""
    return list(dict.fromkeys(fields))


def confidence_of(rule: Rule) -> float:
    """The rule's own confidence."""
    return rule.spec.rule.confidence
