"""The columns every normalised event has, computed once for all datasets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.errors import Location
from correlator.normalise.addresses import Networks, parse
from correlator.normalise.community_id import community_id
from correlator.normalise.mapping import LogMapping, Target
from correlator.normalise.transforms import TRANSFORMS, Options, Tables
from correlator.normalise.zeek_types import safe_cast
from correlator.schema.ecs import ECS_TYPES
from correlator.schema.event import (
    CORE_FIELDS,
    CORE_NAMES,
    DIRECTION_EXTERNAL,
    DIRECTION_INBOUND,
    DIRECTION_INTERNAL,
    DIRECTION_OUTBOUND,
    STRINGS,
)
from correlator.sources.base import RawBatch, Reject


@dataclass(frozen=True, slots=True)
class NormaliseContext:
    """Site knowledge normalisation needs.

    Attributes:
        internal: the site's internal networks.
        trust_zeek_local: also treat Zeek's ``local_orig``/``local_resp`` as internal.
        community_id_seed: seed for computed Community IDs (must match the sensors').
    """

    internal: Networks
    trust_zeek_local: bool = True
    community_id_seed: int = 0


@dataclass(frozen=True, slots=True)
class Normalised:
    """Events of one dataset from one raw batch, and the records that failed.

    Attributes:
        dataset: ``event.dataset`` of the events.
        stream: where events of this shape are stored: the dataset, or for Suricata the
            dataset and event type (``suricata.eve.alert``), whose columns differ.
        events: the normalised events.
        rejects: records that could not be normalised.
    """

    dataset: str
    stream: str
    events: pa.Table
    rejects: list[Reject]


class Columns:
    """Output columns being assembled; a second source for one target fills its gaps."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.data: dict[str, pa.Array] = {}

    def put(self, name: str, values: pa.Array) -> None:
        """Set ``name``, or fill the nulls of an existing ``name`` from ``values``."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        existing = self.data.get(name)
        if existing is None or pa.types.is_null(existing.type):
            self.data[name] = values
        elif not pa.types.is_null(values.type):
            self.data[name] = pc.coalesce(existing, pc.cast(values, existing.type))

    def get(self, name: str) -> pa.Array | None:
        """The column ``name`` if present."""
        return self.data.get(name)


def apply_mapping(
    columns: Mapping[str, pa.Array], mapping: LogMapping, tables: Tables, length: int
) -> Columns:
    """Rename and transform source columns by a mapping table, then derive fields."""
    out = Columns(length)
    for name, values in columns.items():
        targets = mapping.targets(name)
        if targets is None:
            targets = (Target(to=f"{mapping.prefix}.{name}"),)
        for target in targets:
            options = Options(tables=tables, table=target.table, key=target.key)
            out.put(target.to, TRANSFORMS[target.op]([values], options))
    for derived in mapping.derive:
        args = [out.get(a) for a in derived.args]
        if any(a is not None for a in args):
            options = Options(tables=tables, table=derived.table, key=derived.key)
            out.put(derived.to, TRANSFORMS[derived.op](args, options))
    return out


def reject_rows(batch: RawBatch, rows: npt.NDArray[np.int64], reasons: list[str]) -> list[Reject]:
    """Rejects, with their raw lines, for rows of a raw batch that failed normalisation."""
    lines = batch.lines.to_numpy()
    offsets = batch.offsets.to_numpy()
    return [
        Reject(Location(batch.path, int(lines[r])), int(offsets[r]), reason, batch.text(int(r)))
        for r, reason in zip(rows, reasons, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Finished:
    """A normalised table and the rows dropped for a value of the wrong type."""

    events: pa.Table
    rejects: list[Reject]


def finish(
    cols: Columns,
    *,
    batch: RawBatch,
    module: str,
    mapping: LogMapping,
    context: NormaliseContext,
    local_orig: pa.Array | None = None,
    local_resp: pa.Array | None = None,
) -> Finished:
    """Type ECS fields, add the core columns, and order the table: core first, rest by name.

    Args:
        cols: mapped columns of the batch (rows already filtered to valid ones).
        batch: the raw batch, for file, lines and offsets (same rows as ``cols``).
        module: ``zeek`` or ``suricata``.
        mapping: the dataset's mapping, for its constants.
        context: internal networks and Community ID seed.
        local_orig: Zeek's ``local_orig`` where logged.
        local_resp: Zeek's ``local_resp`` where logged.

    Returns:
        The normalised events, and rejects for rows whose ECS fields had the wrong type.
    """
    bad, reasons = _type_ecs(cols)
    rejects: list[Reject] = []
    if bad.any():
        rows = np.flatnonzero(bad)
        rejects = reject_rows(batch, rows, [reasons[r] for r in rows])
        keep = pa.array(~bad)
        cols.data = {name: values.filter(keep) for name, values in cols.data.items()}
        cols.length = int((~bad).sum())
        batch = batch.filter(keep)
        local_orig = local_orig.filter(keep) if local_orig is not None else None
        local_resp = local_resp.filter(keep) if local_resp is not None else None
    n = cols.length
    lines = batch.lines
    cols.put(
        "event.id",
        pc.binary_join_element_wise(pa.scalar(batch.file_key), pc.cast(lines, pa.string()), ":"),
    )
    cols.put("event.module", _constant(module, n))
    cols.put("event.dataset", _constant(mapping.dataset, n))
    cols.put("event.kind", _constant(mapping.kind, n))
    cols.put("event.category", _constant_list(mapping.category, n))
    cols.put("event.type", _constant_list(mapping.type, n))
    if mapping.protocol is not None:
        cols.put("network.protocol", _constant(mapping.protocol, n))
    cols.put("log.file.path", _constant(batch.path, n))
    cols.put("log.offset", batch.offsets)
    cols.put("furui.line", lines)
    _network(cols, context, local_orig, local_resp)
    core = []
    for field in CORE_FIELDS:
        values = cols.data.pop(field.name, None)
        core.append(pa.nulls(n, field.type) if values is None else _cast(values, field.type))
    rest = sorted(cols.data)
    arrays = core + [cols.data[name] for name in rest]
    return Finished(pa.Table.from_arrays(arrays, names=[*CORE_NAMES, *rest]), rejects)


def _type_ecs(cols: Columns) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Cast ECS fields to their types; mark rows with a value that does not fit."""
    bad = np.zeros(cols.length, dtype=bool)
    reasons = [""] * cols.length
    for name, target in ECS_TYPES.items():
        values = cols.data.get(name)
        if values is None or values.type == target:
            continue
        if pa.types.is_null(values.type):
            cols.data[name] = pa.nulls(cols.length, target)
            continue
        converted = safe_cast(_parse_text_time(values, target), target)
        # a value that was there but did not become one of the target type is malformed
        lost = pc.and_(pc.is_valid(values), pc.is_null(converted.values))
        invalid = (
            converted.invalid.to_numpy(zero_copy_only=False) | lost.to_numpy(zero_copy_only=False)
        ) & ~bad
        for row in np.flatnonzero(invalid):
            reasons[row] = f"field {name}: {values[row].as_py()!r} is not a {target}"
        bad |= invalid
        cols.data[name] = converted.values
    return bad, reasons


def _parse_text_time(values: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(target) and pa.types.is_string(values.type):
        return TRANSFORMS["timestamp"]([values], Options(tables={}))
    return values


def _network(
    cols: Columns,
    context: NormaliseContext,
    local_orig: pa.Array | None,
    local_resp: pa.Array | None,
) -> None:
    n = cols.length
    source, destination = cols.get("source.ip"), cols.get("destination.ip")
    if source is None or destination is None:
        return
    src, dst = parse(source), parse(destination)
    src_internal = context.internal.contains(src)
    dst_internal = context.internal.contains(dst)
    if context.trust_zeek_local:
        if local_orig is not None:
            src_internal |= local_orig.fill_null(False).to_numpy(zero_copy_only=False)
        if local_resp is not None:
            dst_internal |= local_resp.fill_null(False).to_numpy(zero_copy_only=False)
    known = src.ok & dst.ok
    direction = np.select(
        [src_internal & dst_internal, src_internal, dst_internal],
        [DIRECTION_INTERNAL, DIRECTION_OUTBOUND, DIRECTION_INBOUND],
        default=DIRECTION_EXTERNAL,
    )
    cols.put("network.direction", pa.array(direction, pa.string(), mask=~known))
    cols.put("related.ip", _related(source, destination))
    transport, sport, dport = (
        cols.get("network.transport"),
        cols.get("source.port"),
        cols.get("destination.port"),
    )
    if transport is not None:
        computed = community_id(
            source,
            destination,
            sport if sport is not None else pa.nulls(n, pa.int64()),
            dport if dport is not None else pa.nulls(n, pa.int64()),
            transport,
            seed=context.community_id_seed,
        )
        cols.put("network.community_id", computed)


def _related(source: pa.Array, destination: pa.Array) -> pa.Array:
    """``[source, destination]`` per row, without nulls or a repeated address."""
    n = len(source)
    both = pa.concat_arrays([pc.cast(source, pa.string()), pc.cast(destination, pa.string())])
    order = np.empty(2 * n, dtype=np.int64)
    order[0::2] = np.arange(n)
    order[1::2] = np.arange(n) + n
    values = both.take(pa.array(order))
    same = pc.equal(source, destination).fill_null(False).to_numpy(zero_copy_only=False)
    keep = pc.is_valid(values).to_numpy(zero_copy_only=False)
    keep[1::2] &= ~same
    counts = keep.reshape(n, 2).sum(axis=1)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(keep)))


def _constant(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _constant_list(values: tuple[str, ...], n: int) -> pa.Array:
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * len(values))
    items = pa.array(list(values), pa.string()).take(pa.array(np.tile(np.arange(len(values)), n)))
    return pa.ListArray.from_arrays(offsets, items, type=STRINGS)


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    if values.type == target:
        return values
    return pc.cast(values, target)
