"""Index layouts Furui reads (Elastic Agent, Filebeat, Security Onion, its own) as events.

Layouts are recognised from each index's fields and name (``data/elasticsearch/
layouts.toml``) and can be forced in settings. Their documents are ECS already; a layout
only renames what differs from Furui's event model, and every document becomes one event of
a stream (``zeek.dns``, ``suricata.eve.alert`` …) with the same column types as files
normalise to, so detectors see the same events in both modes.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from correlator.errors import ConfigError
from correlator.normalise.zeek_types import safe_cast
from correlator.schema.ecs import ECS_TYPES
from correlator.schema.event import CORE_FIELDS, CORE_NAMES
from correlator.schema.unify import to_type

FURUI: Final = "furui"
_EVE: Final = "suricata.eve"


@dataclass(frozen=True, slots=True)
class Layout:
    """What one index layout needs to become Furui events."""

    name: str
    markers: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    event_types: dict[str, str] = field(default_factory=dict)

    def matches_name(self, index: str) -> bool:
        """The index name alone identifies this layout."""
        return any(fnmatch.fnmatchcase(index, pattern) for pattern in self.names)


@cache
def layouts() -> tuple[Layout, ...]:
    """The known layouts, in recognition order.

    Raises:
        ConfigError: the packaged layout table is invalid.
    """
    where = "correlator/data/elasticsearch/layouts.toml"
    text = resources.files("correlator.data").joinpath("elasticsearch", "layouts.toml")
    try:
        raw = tomllib.loads(text.read_text("utf-8"))
        return tuple(
            Layout(
                name=name,
                markers=tuple(spec.get("markers", ())),
                names=tuple(spec.get("names", ())),
                fields=dict(spec.get("fields", {})),
                datasets=dict(spec.get("datasets", {})),
                event_types=dict(spec.get("event_types", {})),
            )
            for name, spec in raw.items()
        )
    except (tomllib.TOMLDecodeError, AttributeError, TypeError) as error:
        raise ConfigError(f"{where}: {error}") from error


def layout_named(name: str) -> Layout:
    """The layout called ``name``.

    Raises:
        ConfigError: no such layout.
    """
    for layout in layouts():
        if layout.name == name:
            return layout
    raise ConfigError(f"unknown index layout {name!r}: {', '.join(x.name for x in layouts())}")


def recognise(index: str, fields: set[str]) -> Layout | None:
    """The layout of an index, from its name and the fields its mapping has."""
    for layout in layouts():
        if layout.markers and all(marker in fields for marker in layout.markers):
            return layout
    for layout in layouts():
        if layout.matches_name(index):
            return layout
    return None


def to_events(page: pa.Table, layout: Layout) -> Iterator[tuple[str, pa.Table]]:
    """Documents of one layout as Furui events, one table per stream.

    Args:
        page: documents flattened to dotted names, with ``_id`` and ``_index``.
        layout: their layout.

    Yields:
        ``(stream, events)`` with the column types normalisation gives.
    """
    columns = {name: page.column(name).combine_chunks() for name in page.column_names}
    for source, target in layout.fields.items():
        if source in columns and target not in columns:
            columns[target] = columns[source]
    if layout.name != FURUI and "_id" in columns:
        columns["event.id"] = columns["_id"]
    dataset = _dataset(columns)
    if dataset is None:
        return
    columns["event.dataset"] = dataset
    if layout.datasets:
        original = pc.cast(dataset, pa.string())
        columns["event.dataset"] = _rename(original, layout.datasets)
        if layout.event_types:
            kinds = _rename(original, layout.event_types, keep=False)
            current = columns.get("suricata.eve.event_type")
            columns["suricata.eve.event_type"] = (
                kinds if current is None else pc.coalesce(current, kinds)
            )
    for meta in ("_id", "_index"):
        columns.pop(meta, None)
    table = pa.table(columns)
    streams = _stream_names(table)
    for stream in pc.unique(streams).drop_null().to_pylist():
        subset = table.filter(pc.equal(streams, stream).fill_null(False))
        yield stream, _typed(_without_empty(subset))


def _dataset(columns: dict[str, pa.Array]) -> pa.Array | None:
    """``event.dataset``, else ``data_stream.dataset``, else ``suricata.eve`` for eve fields.

    Elastic's pipeline test documents, and documents re-indexed without their data stream
    fields, lack ``event.dataset`` although what they are is plain.
    """
    found = [
        pc.cast(columns[n], pa.string())
        for n in ("event.dataset", "data_stream.dataset")
        if n in columns
    ]
    kind = columns.get("suricata.eve.event_type")
    if kind is not None:
        eve = pa.repeat(pa.scalar(_EVE), len(kind))
        found.append(pc.if_else(pc.is_valid(kind), eve, pa.scalar(None, pa.string())))
    if not found:
        return None
    return found[0] if len(found) == 1 else pc.coalesce(*found)


def _stream_names(table: pa.Table) -> pa.Array:
    dataset = pc.cast(table.column("event.dataset").combine_chunks(), pa.string())
    if "suricata.eve.event_type" not in table.column_names:
        return dataset
    kind = pc.cast(table.column("suricata.eve.event_type").combine_chunks(), pa.string())
    eve = pc.equal(dataset, _EVE).fill_null(False)
    return pc.if_else(eve, pc.binary_join_element_wise(dataset, kind, "."), dataset)


def _rename(values: pa.Array, table: dict[str, str], *, keep: bool = True) -> pa.Array:
    keys = pa.array(list(table), pa.string())
    index = pc.index_in(values, value_set=keys)
    renamed = pc.take(pa.array(list(table.values()), pa.string()), index)
    return pc.coalesce(renamed, values) if keep else renamed


def _without_empty(table: pa.Table) -> pa.Table:
    keep = [
        n
        for n in table.column_names
        if table.column(n).null_count < table.num_rows or n in CORE_NAMES
    ]
    return table.select(keep)


def _typed(table: pa.Table) -> pa.Table:
    """Cast columns back to the types normalisation gives (JSON has no dates or int32)."""
    types = {f.name: f.type for f in CORE_FIELDS} | ECS_TYPES
    arrays = []
    for name in table.column_names:
        values = table.column(name).combine_chunks()
        target = types.get(name)
        if target is not None and values.type != target:
            values = _cast(values, target)
        arrays.append(values)
    missing = [f for f in CORE_FIELDS if f.name not in table.column_names]
    names = [*table.column_names, *(f.name for f in missing)]
    arrays += [pa.nulls(table.num_rows, f.type) for f in missing]
    typed = pa.Table.from_arrays(arrays, names=names)
    rest = sorted(n for n in names if n not in CORE_NAMES)
    return typed.select([*CORE_NAMES, *rest])


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(target) and pa.types.is_string(values.type):
        return pc.cast(values, target)
    if pa.types.is_list(target):
        if not pa.types.is_list(values.type):  # a single value where ECS allows an array
            offsets = pa.array(range(len(values) + 1), pa.int32())
            values = pa.ListArray.from_arrays(
                offsets, pc.cast(values, target.value_type), mask=pc.is_null(values)
            )
        return to_type(values, target)
    return safe_cast(values, target).values
