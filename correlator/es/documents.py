"""Arrow tables to Elasticsearch documents and back, without a Python loop per document.

Writing: an in-memory DuckDB turns flat dotted columns into nested JSON objects
(``to_json`` over ``struct_pack``) and builds the bulk request's lines; the request body is
the Arrow string buffer itself. Reading: a raw search response is parsed by Arrow's JSON
reader into columns (``hits.hits[]._source`` flattened to dotted names).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from correlator.schema.flat import flatten
from correlator.schema.unify import unify

_ISO: Final = "%Y-%m-%dT%H:%M:%SZ"  # %S carries the microseconds of a us timestamp


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value(name: str, data_type: pa.DataType) -> str:
    del data_type  # times were turned into ISO text beforehand (iso_times)
    return _quote(name)


def iso_times(values: pa.Array) -> pa.Array:
    """Every timestamp in ``values`` (nested in lists and structs too) as ISO 8601 text.

    Elasticsearch's default date format reads ``2018-03-24T17:15:20.865716Z``; DuckDB's
    JSON would write ``2018-03-24 17:15:20.865716+00``.
    """
    kind = values.type
    if pa.types.is_timestamp(kind):
        utc = pc.cast(values, pa.timestamp("us", tz="UTC"))
        return pc.strftime(utc, format=_ISO)
    if pa.types.is_list(kind) and _has_time(kind):
        inner = iso_times(values.flatten())
        return pa.ListArray.from_arrays(values.offsets, inner, mask=values.is_null())
    if pa.types.is_struct(kind) and _has_time(kind):
        children = [iso_times(pc.struct_field(values, [i])) for i in range(kind.num_fields)]
        names = [kind.field(i).name for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, names=names, mask=values.is_null())
    return values


def _has_time(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind):
        return True
    if pa.types.is_list(kind):
        return _has_time(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_has_time(kind.field(i).type) for i in range(kind.num_fields))
    return False


def document_sql(schema: pa.Schema) -> str:
    """A DuckDB expression building one nested JSON document from flat dotted columns."""
    tree: dict[str, Any] = {}
    for field in schema:
        if pa.types.is_null(field.type):
            continue
        node = tree
        parts = field.name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a value and an object share a name
                child = node[part] = {"value": child}
            node = child
        node[parts[-1]] = field

    def build(node: dict[str, Any]) -> str:
        items = []
        for key, child in node.items():
            inner = _value(child.name, child.type) if isinstance(child, pa.Field) else build(child)
            items.append(f"{_literal(key)}: {inner}")
        return "{" + ", ".join(items) + "}"

    return f"to_json({build(tree)})"


def bulk_lines(table: pa.Table, *, index: str, id_field: str, mode: str = "index") -> pa.Array:
    """One string per row of ``table``: a bulk action line and its body, newline-ended.

    Args:
        table: documents as flat dotted columns.
        index: target index.
        id_field: column holding each document's ``_id`` (deterministic ids make re-runs
            overwrite instead of duplicate).
        mode: ``index`` (replace the document), or ``upsert``: update it partially, so
            fields the table lacks (an analyst's ``furui.status``) survive, and create it
            with ``furui.status: open`` when new.

    Raises:
        ValueError: a row could not be serialised.
    """
    target = _json_string(index)
    document = document_sql(table.schema)
    if mode == "index":
        head, body = f'{{"index":{{"_index":{target},"_id":', document
    elif mode == "upsert":
        head = f'{{"update":{{"_index":{target},"_id":'
        body = (
            "'{\"doc\":' || "
            + document
            + " || ',\"upsert\":' || json_merge_patch("
            + document
            + ', \'{"furui":{"status":"open"}}\') || \'}\''
        )
    else:
        raise ValueError(f"unknown bulk mode {mode!r}")
    sql = (
        f"SELECT {_literal(head)} || to_json({_quote(id_field)}::VARCHAR) || '}}}}' || chr(10)"
        f" || {body} || chr(10) AS line FROM batch"
    )
    table = pa.Table.from_arrays(
        [iso_times(c.combine_chunks()) if _has_time(c.type) else c for c in table.columns],
        names=table.column_names,
    )
    connection = duckdb.connect()
    try:
        connection.execute("SET threads = 1").fetchall()
        connection.register("batch", table)
        lines = connection.sql(sql).to_arrow_table().column("line").combine_chunks()
    finally:
        connection.close()
    if lines.null_count:
        raise ValueError(f"{index}: a document could not be serialised")
    return lines


def joined(lines: pa.Array) -> bytes:
    """The values of a string array back to back (a slice of its data buffer)."""
    offsets = lines.buffers()[1]
    starts = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets], offset=lines.offset)
    first, last = starts[0].as_py(), starts[-1].as_py()
    data: bytes = lines.buffers()[2][first:last].to_pybytes()
    return data


def _json_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Page:
    """One page of search hits as columns.

    Attributes:
        table: the hits' ``_source``, flattened to dotted names, plus ``_id`` and ``_index``.
        sort: the last hit's sort values (for ``search_after``), if any hit.
        pit_id: the point-in-time id the server returned.
        sort_time: each hit's first sort value (the time it was sorted by, epoch ms).
    """

    table: pa.Table
    sort: list[Any] | None
    pit_id: str | None
    sort_time: pa.Array | None = None


def parse_page(raw: bytes) -> Page:
    """Parse a raw ``_search`` response (one JSON object) into columns.

    Raises:
        ValueError: the response is not a search response.
    """
    try:
        response = pjson.read_json(
            io.BytesIO(raw.replace(b"\n", b" ") + b"\n"),
            parse_options=pjson.ParseOptions(newlines_in_values=True),
            read_options=pjson.ReadOptions(block_size=max(len(raw) + 2, 1 << 20)),
        )
    except pa.ArrowInvalid:
        # hits whose fields disagree in type (different layouts or sensors in one page)
        return _parse_by_index(raw)
    if "hits" not in response.column_names:
        raise ValueError("not a search response")
    pit = response.column("pit_id")[0].as_py() if "pit_id" in response.column_names else None
    hits_struct = response.column("hits").combine_chunks()
    hits = pc.struct_field(hits_struct, "hits")[0]
    if not hits.is_valid or not len(hits.values):
        return Page(pa.table({}), None, pit)
    rows = hits.values  # struct per hit
    names = [rows.type.field(i).name for i in range(rows.type.num_fields)]
    columns: dict[str, pa.Array] = {}
    if "_source" in names:
        source = pa.Table.from_struct_array(pc.struct_field(rows, "_source"))
        columns.update(zip(source.column_names, source.columns, strict=True))
    for meta in ("_id", "_index"):
        if meta in names:
            columns[meta] = pc.struct_field(rows, meta)
    last_sort, sort_time = None, None
    if "sort" in names:
        sorts = pc.struct_field(rows, "sort")
        last_sort = sorts[-1].as_py()
        sort_time = pc.cast(pc.list_element(sorts, 0), pa.int64())
    table = flatten(pa.table(columns), escape_dots=False)
    return Page(table, last_sort, pit, sort_time)


def _parse_by_index(raw: bytes) -> Page:
    """Slow path: parse per index, where documents share their field types."""
    response = orjson.loads(raw)
    hits = response.get("hits", {}).get("hits", [])
    pit = response.get("pit_id")
    if not hits:
        return Page(pa.table({}), None, pit)
    groups: dict[str, list[int]] = {}
    for position, hit in enumerate(hits):
        groups.setdefault(hit.get("_index", ""), []).append(position)
    tables = []
    order = []
    for index, positions in groups.items():
        lines = b"\n".join(orjson.dumps(hits[p].get("_source", {})) for p in positions) + b"\n"
        table = flatten(pjson.read_json(io.BytesIO(lines)), escape_dots=False)
        table = table.append_column("_id", pa.array([hits[p].get("_id") for p in positions]))
        table = table.append_column("_index", pa.repeat(pa.scalar(index), len(positions)))
        tables.append(table)
        order.extend(positions)
    table = unify(tables).take(pa.array(_inverse(order)))
    sort_time = pa.array([(h.get("sort") or [None])[0] for h in hits], pa.int64())
    return Page(table, hits[-1].get("sort"), pit, sort_time)


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, original in enumerate(order):
        inverse[original] = position
    return inverse
