"""Bringing batches of one stream to a common schema.

Vendor fields (``suricata.eve.*``, ``zeek.*``) are typed by what the sensor wrote, and a
sensor may write one field as a number in one file and as text in another. Such a column
becomes text in every batch; everything else keeps its type, and missing columns are null.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.event import CORE_NAMES


def unified_type(types: list[pa.DataType]) -> pa.DataType:
    """The type several batches' versions of one column are brought to."""
    distinct = [t for t in dict.fromkeys(types) if not pa.types.is_null(t)]
    if not distinct:
        return pa.null()
    if len(distinct) == 1:
        return distinct[0]
    if all(pa.types.is_integer(t) for t in distinct):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in distinct):
        return pa.float64()
    return pa.string()


def to_type(values: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """Cast ``values`` to ``target``; nested values that cannot be cast become JSON text."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), target)
    if pa.types.is_string(target) and pa.types.is_nested(values.type):
        texts = [
            None if v is None else orjson.dumps(v, default=str).decode() for v in values.to_pylist()
        ]  # rare: a field nested in one file, flat in another
        return pa.array(texts, pa.string())
    return pc.cast(values, target)


def unify(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables of one stream, reconciling their schemas (see module docstring)."""
    if len(tables) == 1:
        return tables[0]
    order: dict[str, list[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            order.setdefault(field.name, []).append(field.type)
    # core columns first, in the event model's order, then the rest by name: the same order
    # as normalisation gives, whatever the batches
    names = [n for n in CORE_NAMES if n in order] + sorted(n for n in order if n not in CORE_NAMES)
    targets = {name: unified_type(order[name]) for name in names}
    aligned = []
    for table in tables:
        arrays = [_aligned(table, name, target) for name, target in targets.items()]
        aligned.append(pa.Table.from_arrays(arrays, names=list(targets)))
    return pa.concat_tables(aligned)


def _aligned(table: pa.Table, name: str, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """``table[name]`` as ``target``, without copying a column that already fits."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, target)
    column = table.column(name)
    return column if column.type == target else to_type(column, target)
