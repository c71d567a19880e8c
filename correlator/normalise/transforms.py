"""Named, vectorised value transforms that mapping tables refer to by name.

A transform takes its input columns (already typed; ``None`` for an argument the batch
lacks) and its options, and returns one column. The registry is explicit, so a mapping that
names an unknown transform fails when it is loaded, not halfway through a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.event import STRINGS, TIMESTAMP

Tables = Mapping[str, Mapping[str, str]]
Columns = list[pa.Array | None]

_NS_PER_S: Final = 1_000_000_000
_IP_TEXT: Final = r"^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$"


@dataclass(frozen=True, slots=True)
class Options:
    """Parameters a mapping entry passes to its transform.

    Attributes:
        tables: the mapping file's lookup tables.
        table: name of the lookup table this entry uses.
        key: a struct field or prefix this entry uses.
    """

    tables: Tables
    table: str | None = None
    key: str | None = None

    def lookup_table(self) -> Mapping[str, str]:
        """The named lookup table."""
        if self.table is None:
            raise KeyError("this transform needs `table`")
        return self.tables[self.table]

    def required_key(self) -> str:
        """The ``key`` option, which this transform needs."""
        if self.key is None:
            raise KeyError("this transform needs `key`")
        return self.key


Transform = Callable[[Columns, Options], pa.Array]


def _one(cols: Columns) -> pa.Array:
    value = cols[0]
    if value is None:
        raise ValueError("missing input column")
    return value


def _identity(cols: Columns, _opts: Options) -> pa.Array:
    return _one(cols)


def _lower(cols: Columns, _opts: Options) -> pa.Array:
    return pc.utf8_lower(pc.cast(_one(cols), pa.string()))


def _to_string(cols: Columns, _opts: Options) -> pa.Array:
    return pc.cast(_one(cols), pa.string())


def _seconds_to_ns(cols: Columns, _opts: Options) -> pa.Array:
    seconds = pc.cast(_one(cols), pa.float64())
    return pc.cast(pc.round(pc.multiply(seconds, float(_NS_PER_S))), pa.int64())


def _timestamp(cols: Columns, _opts: Options) -> pa.Array:
    """Text times (ISO 8601, any offset; naive means UTC) to UTC timestamps."""
    values = _one(cols)
    if pa.types.is_timestamp(values.type):
        return pc.cast(values, TIMESTAMP)
    text = pc.cast(values, pa.string())
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d{2}:?\d{2})$").fill_null(True)
    zoned = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))
    return pc.cast(zoned, TIMESTAMP)


def _lookup(cols: Columns, opts: Options) -> pa.Array:
    table = opts.lookup_table()
    keys = pa.array(list(table.keys()), pa.string())
    index = pc.index_in(pc.cast(_one(cols), pa.string()), value_set=keys)
    return pc.take(pa.array(list(table.values()), pa.string()), index)


def _sum(cols: Columns, _opts: Options) -> pa.Array:
    present = [c for c in cols if c is not None]
    total = present[0].fill_null(0)
    for col in present[1:]:
        total = pc.add(total, col.fill_null(0))
    all_null = pc.is_null(present[0])
    for col in present[1:]:
        all_null = pc.and_(all_null, pc.is_null(col))
    return pc.if_else(all_null, pa.scalar(None, total.type), total)


def _coalesce(cols: Columns, _opts: Options) -> pa.Array:
    present = [c for c in cols if c is not None]
    if len(present) == 1:
        return present[0]
    return pc.coalesce(*present)


def _as_string_lists(values: pa.Array, key: str | None) -> pa.Array:
    """A list<string> view of a string, a list of strings or a list of structs."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        items = values.flatten()
        if pa.types.is_struct(items.type):
            names = [items.type.field(i).name for i in range(items.type.num_fields)]
            items = (pc.struct_field(items, key) if key in names
                     else pa.nulls(len(items), pa.string()))
        rebuilt = pa.ListArray.from_arrays(values.offsets, pc.cast(items, pa.string()))
        return pc.if_else(pc.is_null(values), pa.scalar(None, STRINGS), rebuilt)
    text = pc.cast(values, pa.string())
    offsets = np.arange(len(text) + 1, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), text, mask=pc.is_null(text))


def _concat_lists(lists: list[pa.Array]) -> pa.Array:
    """Row-wise concatenation of several list<string> columns of equal length."""
    n = len(lists[0])
    counts = np.zeros(n, dtype=np.int64)
    for values in lists:
        counts += pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    parents = np.concatenate([pc.list_parent_indices(v).to_numpy() for v in lists])
    items = pa.concat_arrays([v.flatten() for v in lists])
    order = np.argsort(parents, kind="stable")
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), items.take(pa.array(order)))


def _ips(cols: Columns, opts: Options) -> pa.Array:
    """The IP addresses among one or more answer columns (``dns.resolved_ip``).

    Inputs may be strings (eve v1 ``rdata``), lists of strings (Zeek ``answers``) or lists
    of structs whose ``key`` field (default ``rdata``) holds the value (eve v2/v3).
    """
    lists = [_as_string_lists(c, opts.key or "rdata") for c in cols if c is not None]
    combined = lists[0] if len(lists) == 1 else _concat_lists(lists)
    flat = combined.flatten()
    keep = pc.match_substring_regex(flat, _IP_TEXT).fill_null(False)
    parents = pc.filter(pc.list_parent_indices(combined), keep).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents, minlength=len(combined)) if len(parents) else np.zeros(
        len(combined), dtype=np.int64
    )
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.filter(flat, keep))


def _pluck(cols: Columns, opts: Options) -> pa.Array:
    """Field ``key`` of every struct in a list of structs, as a list of strings."""
    return _as_string_lists(_one(cols), opts.required_key())


def _first_field(cols: Columns, opts: Options) -> pa.Array:
    """Field ``key`` of the first struct in a list (eve v3 ``queries[0].rrname``)."""
    return pc.list_element(_pluck(cols, opts), 0)


def _url_path(cols: Columns, _opts: Options) -> pa.Array:
    return pc.replace_substring_regex(pc.cast(_one(cols), pa.string()), r"[?#].*$", "")


def _url_query(cols: Columns, _opts: Options) -> pa.Array:
    text = pc.cast(_one(cols), pa.string())
    has_query = pc.match_substring(text, "?").fill_null(False)
    query = pc.replace_substring_regex(text, r"^[^?]*\?([^#]*).*$", r"\1")
    return pc.if_else(has_query, query, pa.scalar(None, pa.string()))


def _strip_prefix(cols: Columns, opts: Options) -> pa.Array:
    """Remove a leading ``key`` (``HTTP/1.1`` → ``1.1``)."""
    text = pc.cast(_one(cols), pa.string())
    prefix = opts.required_key()
    return pc.if_else(pc.starts_with(text, prefix), pc.utf8_slice_codeunits(text, len(prefix)), text)


def _hex_upper(cols: Columns, _opts: Options) -> pa.Array:
    """Fingerprints as ECS wants them: upper-case hex without separators."""
    text = pc.cast(_one(cols), pa.string())
    return pc.utf8_upper(pc.replace_substring(text, ":", ""))


def _flags(cols: Columns, opts: Options) -> pa.Array:
    """Names of the true booleans, in order (``dns.header_flags`` from AA/TC/RD/RA)."""
    names = list(opts.lookup_table().values())
    n = len(next(c for c in cols if c is not None))
    columns = [
        np.zeros(n, dtype=bool) if c is None
        else c.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        for c in cols
    ]
    matrix = np.stack(columns, axis=1)
    offsets = np.concatenate(([0], np.cumsum(matrix.sum(axis=1)))).astype(np.int32)
    which = np.nonzero(matrix)[1]
    labels = pa.array(names, pa.string()).take(pa.array(which, pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets), labels)


def _join_path(cols: Columns, _opts: Options) -> pa.Array:
    """Join a directory and a name with a backslash (SMB paths)."""
    if cols[0] is None or cols[1] is None:
        return pc.cast(_one([cols[1] if cols[0] is None else cols[0]]), pa.string())
    base, name = pc.cast(cols[0], pa.string()), pc.cast(cols[1], pa.string())
    joined = pc.binary_join_element_wise(base, name, "\\")
    return pc.if_else(pc.is_null(base), name, joined)


#: Every transform a mapping table may name.
TRANSFORMS: Final[dict[str, Transform]] = {
    "identity": _identity,
    "lower": _lower,
    "to_string": _to_string,
    "seconds_to_ns": _seconds_to_ns,
    "timestamp": _timestamp,
    "lookup": _lookup,
    "sum": _sum,
    "coalesce": _coalesce,
    "ips": _ips,
    "pluck": _pluck,
    "first_field": _first_field,
    "url_path": _url_path,
    "url_query": _url_query,
    "strip_prefix": _strip_prefix,
    "hex_upper": _hex_upper,
    "flags": _flags,
    "join_path": _join_path,
}
