"""Nested Arrow structs to flat dotted column names, the event model's naming."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def flatten(table: pa.Table, *, escape_dots: bool) -> pa.Table:
    """Flatten struct columns recursively into ``parent.child`` columns.

    Args:
        table: possibly nested columns.
        escape_dots: keys are literal names whose dots become ``_`` (Suricata's
            ``vars.flowbits["ET.http.javaclient"]``; left alone, one name would be both a
            value and the parent of ``ET.http.javaclient.vulnerable``). Without it, dots
            in keys are paths already, as in Elasticsearch ``_source``.
    """

    def key(name: str) -> str:
        return name.replace(".", "_") if escape_dots else name

    if escape_dots:
        table = table.rename_columns([key(name) for name in table.column_names])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        names: list[str] = []
        arrays: list[pa.ChunkedArray] = []
        for field, column in zip(table.schema, table.columns, strict=True):
            if not pa.types.is_struct(field.type):
                names.append(field.name)
                arrays.append(column)
                continue
            for child in range(field.type.num_fields):
                names.append(f"{field.name}.{key(field.type.field(child).name)}")
                arrays.append(pc.struct_field(column, [child]))
        table = pa.Table.from_arrays(arrays, names=names)
    return table
