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
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.normalise.zeek_types import safe_cast
from correlator.schema.event import STRINGS, TIMESTAMP

Tables = Mapping[str, Mapping[str, str]]
Columns = list[pa.Array | None]

_NS_PER_S: Final = 1_000_000_000
_IP_TEXT: Final = r"^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$"
_URL_AUTHORITY: Final = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*"
_US_PER_DAY: Final = 86_400_000_000.0
_MAC_DIGITS: Final = 12
_ISO_TIME: Final = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"
_PAIR: Final = 2


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


def _lower(cols: Columns, opts: Options) -> pa.Array:
    """Lower-case text; values listed in ``key`` (comma-separated) become null."""
    text = pc.utf8_lower(pc.cast(_one(cols), pa.string()))
    if opts.key is None:
        return text
    dropped = pc.is_in(text, value_set=pa.array(opts.key.split(","), pa.string()))
    return pc.if_else(dropped, pa.scalar(None, pa.string()), text)


def _to_string(cols: Columns, _opts: Options) -> pa.Array:
    return pc.cast(_one(cols), pa.string())


def _seconds_to_ns(cols: Columns, _opts: Options) -> pa.Array:
    seconds = pc.cast(_one(cols), pa.float64())
    return pc.cast(pc.round(pc.multiply(seconds, float(_NS_PER_S))), pa.int64())


def _timestamp(cols: Columns, _opts: Options) -> pa.Array:
    """Text times (ISO 8601, any offset; naive means UTC) to UTC timestamps.

    A text that is not a time becomes null rather than failing the whole batch.
    """
    values = _one(cols)
    if pa.types.is_timestamp(values.type):
        return pc.cast(values, TIMESTAMP)
    text = pc.cast(values, pa.string())
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d{2}:?\d{2})$").fill_null(True)
    zoned = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))
    return _parse_times(zoned)


def _parse_times(text: pa.Array) -> pa.Array:
    """ISO 8601 texts with a zone to timestamps; other texts become null.

    The shape check keeps the cast vectorised; only an impossible date of the right shape
    (a 13th month) takes ``safe_cast``'s row-by-row path.
    """
    iso = pc.match_substring_regex(text, _ISO_TIME).fill_null(False)
    return safe_cast(pc.if_else(iso, text, pa.scalar(None, pa.string())), TIMESTAMP).values


def _lookup(cols: Columns, opts: Options) -> pa.Array:
    """Values through a lookup table; unknown values become null (booleans as true/false)."""
    table = opts.lookup_table()
    keys = pa.array(list(table.keys()), pa.string())
    index = pc.index_in(pc.cast(_one(cols), pa.string()), value_set=keys)
    return pc.take(pa.array(list(table.values()), pa.string()), index)


def _lookup_list(cols: Columns, opts: Options) -> pa.Array:
    """Like ``lookup``, to a list: table values are comma-separated (``event.type``)."""
    table = opts.lookup_table()
    keys = pa.array(list(table.keys()), pa.string())
    lists = pa.array([v.split(",") if v else [] for v in table.values()], STRINGS)
    return pc.take(lists, pc.index_in(pc.cast(_one(cols), pa.string()), value_set=keys))


def _constant(cols: Columns, opts: Options) -> pa.Array:
    """The text ``key`` on every row (``network.transport`` of a TCP-only protocol)."""
    rows = len(next(c for c in cols if c is not None))
    return pa.repeat(pa.scalar(opts.required_key(), pa.string()), rows)


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


def _combined(values: pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _is_list(values: pa.Array) -> bool:
    return bool(pa.types.is_list(values.type) or pa.types.is_large_list(values.type))


def _lengths(values: pa.Array) -> npt.NDArray[np.int64]:
    """Element counts of a list column, 0 for a null list."""
    lengths = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    return np.asarray(lengths, dtype=np.int64)


def _regroup(
    items: pa.Array, parents: npt.NDArray[np.int64], rows: int, *, empty_is_null: bool
) -> pa.Array:
    """Lists of ``rows`` rows from items and the (ascending) row each item belongs to."""
    counts = np.bincount(parents, minlength=rows) if len(parents) else np.zeros(rows, np.int64)
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))).astype(np.int32))
    if empty_is_null:
        return pa.ListArray.from_arrays(offsets, items, mask=pa.array(counts == 0))
    return pa.ListArray.from_arrays(offsets, items)


def _parents(values: pa.Array) -> npt.NDArray[np.int64]:
    """The row of every item of ``values.flatten()`` (null lists contribute no items)."""
    return np.repeat(np.arange(len(values), dtype=np.int64), _lengths(values))


def _as_string_lists(values: pa.Array, key: str | None) -> pa.Array:
    """A list<string> view of a string, a list of strings or a list of structs."""
    values = _combined(values)
    if _is_list(values):
        items = values.flatten()
        if pa.types.is_struct(items.type):
            names = [items.type.field(i).name for i in range(items.type.num_fields)]
            items = (
                pc.struct_field(items, key) if key in names else pa.nulls(len(items), pa.string())
            )
        rebuilt = _regroup(
            pc.cast(items, pa.string()), _parents(values), len(values), empty_is_null=False
        )
        return pc.if_else(pc.is_null(values), pa.scalar(None, STRINGS), rebuilt)
    text = pc.cast(values, pa.string())
    valid = np.asarray(pc.is_valid(text).to_numpy(zero_copy_only=False), bool)
    offsets = pa.array(np.concatenate(([0], np.cumsum(valid))).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pc.drop_null(text), mask=pa.array(~valid))


def _concat_lists(lists: list[pa.Array]) -> pa.Array:
    """Row-wise concatenation of several list<string> columns of equal length."""
    parents = np.concatenate([_parents(v) for v in lists])
    items = pa.concat_arrays([v.flatten() for v in lists])
    order = np.argsort(parents, kind="stable")
    return _regroup(items.take(pa.array(order)), parents[order], len(lists[0]), empty_is_null=False)


def _ips(cols: Columns, opts: Options) -> pa.Array:
    """The IP addresses among one or more answer columns (``dns.resolved_ip``).

    Inputs may be strings (eve v1 ``rdata``), lists of strings (Zeek ``answers``) or lists
    of structs whose ``key`` field (default ``rdata``) holds the value (eve v2/v3). Each
    address is listed once (eve v2 repeats answers in ``grouped``). A row without answers
    is null; answers without an address give ``[]``, as in Elastic's.
    """
    lists = [_as_string_lists(c, opts.key or "rdata") for c in cols if c is not None]
    combined = lists[0] if len(lists) == 1 else _concat_lists(lists)
    answered = np.zeros(len(combined), dtype=bool)
    for values in lists:
        answered |= np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), bool)
    flat = combined.flatten()
    keep = pc.match_substring_regex(flat, _IP_TEXT).fill_null(False)
    parents = _parents(combined)[np.asarray(keep.to_numpy(zero_copy_only=False), bool)]
    addresses, parents = _distinct(pc.filter(flat, keep), parents)
    found = _regroup(addresses, parents, len(combined), empty_is_null=False)
    return pc.if_else(pa.array(answered), found, pa.scalar(None, STRINGS))


def _distinct(
    values: pa.Array, parents: npt.NDArray[np.int64]
) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """The first occurrence of each value within its row, in order."""
    if not len(values):
        return values, parents
    codes = np.asarray(pc.dictionary_encode(values).indices.to_numpy(), np.int64)
    _, first = np.unique(parents * (int(codes.max()) + 1) + codes, return_index=True)
    first.sort()
    return values.take(pa.array(first)), parents[first]


def _collect(cols: Columns, _opts: Options) -> pa.Array:
    """Distinct non-empty values of several columns per row, in order (``related.*``).

    Inputs may be scalars or lists; a row with no value is null, so the core columns
    (``related.ip`` from source and destination) can still fill it.
    """
    lists = [_as_string_lists(c, None) for c in cols if c is not None]
    combined = lists[0] if len(lists) == 1 else _concat_lists(lists)
    flat = combined.flatten()
    keep = np.asarray(
        pc.fill_null(pc.not_equal(flat, ""), False).to_numpy(zero_copy_only=False), bool
    )
    rows = np.flatnonzero(keep)
    values, parents = _distinct(flat.take(pa.array(rows)), _parents(combined)[rows])
    return _regroup(values, parents, len(combined), empty_is_null=True)


def _wrap(cols: Columns, _opts: Options) -> pa.Array:
    """A value as a one-element list (ECS arrays such as ``host.ip``)."""
    return _as_string_lists(_one(cols), None)


def _first(cols: Columns, _opts: Options) -> pa.Array:
    """The first element of a list (null for an empty or null list); scalars pass through."""
    values = _combined(_one(cols))
    if not _is_list(values):
        return values
    starts = values.offsets.to_numpy()[:-1]
    index = pa.array(starts.astype(np.int64), mask=_lengths(values) == 0)
    return values.values.take(index)


def _pluck(cols: Columns, opts: Options) -> pa.Array:
    """Field ``key`` of every struct in a list of structs, as a list of strings."""
    return _as_string_lists(_one(cols), opts.required_key())


def _first_field(cols: Columns, opts: Options) -> pa.Array:
    """Field ``key`` of the first struct in a list (eve v3 ``queries[0].rrname``)."""
    return _first([_pluck(cols, opts)], opts)


def _extract(cols: Columns, opts: Options) -> pa.Array:
    """The group ``(?P<value>…)`` of the regular expression ``key``; null if no match."""
    matched = pc.extract_regex(pc.cast(_one(cols), pa.string()), pattern=opts.required_key())
    value = pc.struct_field(matched, [0])
    empty = pc.or_(pc.is_null(matched), pc.equal(value, "")).fill_null(True)
    return pc.if_else(empty, pa.scalar(None, pa.string()), value)


def _url_path(cols: Columns, _opts: Options) -> pa.Array:
    """The path of a URL or request target (an absolute URL loses scheme and authority)."""
    text = pc.replace_substring_regex(pc.cast(_one(cols), pa.string()), _URL_AUTHORITY, "")
    return pc.replace_substring_regex(text, r"[?#].*$", "")


def _url_query(cols: Columns, _opts: Options) -> pa.Array:
    text = pc.cast(_one(cols), pa.string())
    has_query = pc.match_substring(text, "?").fill_null(False)
    query = pc.replace_substring_regex(text, r"^[^?]*\?([^#]*).*$", r"\1")
    return pc.if_else(has_query, query, pa.scalar(None, pa.string()))


def _strip_prefix(cols: Columns, opts: Options) -> pa.Array:
    """Remove a leading ``key`` (``HTTP/1.1`` → ``1.1``)."""
    text = pc.cast(_one(cols), pa.string())
    prefix = opts.required_key()
    stripped = pc.utf8_slice_codeunits(text, len(prefix))
    return pc.if_else(pc.starts_with(text, prefix), stripped, text)


def _rstrip(cols: Columns, opts: Options) -> pa.Array:
    """Remove trailing characters listed in ``key`` (the root dot of an SNI)."""
    return pc.utf8_rtrim(pc.cast(_one(cols), pa.string()), characters=opts.required_key())


def _hex_upper(cols: Columns, _opts: Options) -> pa.Array:
    """Fingerprints as ECS wants them: upper-case hex without separators."""
    text = pc.cast(_one(cols), pa.string())
    return pc.utf8_upper(pc.replace_substring(text, ":", ""))


def _mac(cols: Columns, _opts: Options) -> pa.Array:
    """MAC addresses in ECS form: upper-case hex pairs joined by hyphens."""
    text = pc.cast(_one(cols), pa.string())
    digits = pc.utf8_upper(pc.replace_substring_regex(text, r"[-:.]", ""))
    pairs = [pc.utf8_slice_codeunits(digits, i, i + 2) for i in range(0, _MAC_DIGITS, 2)]
    joined = pc.binary_join_element_wise(*pairs, "-")
    other = pc.utf8_upper(pc.replace_substring(text, ":", "-"))
    return pc.if_else(pc.equal(pc.utf8_length(digits), _MAC_DIGITS), joined, other)


def _to_int(cols: Columns, _opts: Options) -> pa.Array:
    """Integers from numbers or decimal text; anything else becomes null."""
    values = _one(cols)
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.int64())
    text = pc.cast(values, pa.string())
    decimal = pc.match_substring_regex(text, r"^-?\d{1,18}$").fill_null(False)
    return pc.cast(pc.if_else(decimal, text, pa.scalar(None, pa.string())), pa.int64())


def _date(cols: Columns, _opts: Options) -> pa.Array:
    """Dates from rule metadata (``2019_06_01``, ``2019-06-01``, a list of one) to timestamps."""
    values = _first(cols, _opts)
    if pa.types.is_timestamp(values.type):  # the JSON reader already parsed it
        return _timestamp([values], _opts)
    text = pc.replace_substring_regex(
        pc.cast(values, pa.string()), r"^(\d{4})_(\d{2})_(\d{2})", r"\1-\2-\3"
    )
    day_only = pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$").fill_null(False)
    text = pc.if_else(day_only, pc.binary_join_element_wise(text, "T00:00:00", ""), text)
    return _timestamp([text], _opts)


def _dn_values(values: pa.Array, attribute: str) -> pa.Array:
    r"""Values of one attribute (``CN``) of distinguished names, a list per row.

    Escaped commas inside a value are dropped as Elastic's pipelines drop them
    (``O=Example\, Inc.`` gives ``Example Inc.``), so both sensors' DN styles
    (``a=1,b=2`` and ``a=1, b=2``) split the same way.
    """
    text = pc.replace_substring_regex(pc.cast(_combined(values), pa.string()), r"\\+,", "")
    parts = pc.split_pattern(text, ",")
    flat = pc.utf8_trim_whitespace(parts.flatten())
    prefix = f"{attribute}="
    keep = pc.starts_with(flat, prefix).fill_null(False)
    found = pc.utf8_slice_codeunits(pc.filter(flat, keep), len(prefix))
    parents = _parents(parts)[np.asarray(keep.to_numpy(zero_copy_only=False), bool)]
    return _regroup(found, parents, len(text), empty_is_null=True)


def _dn_parts(cols: Columns, opts: Options) -> pa.Array:
    """All values of DN attribute ``key``, as ECS ``x509.*`` arrays."""
    return _dn_values(_one(cols), opts.required_key())


def _dn_part(cols: Columns, opts: Options) -> pa.Array:
    """The first value of DN attribute ``key`` (``zeek.ssl.server.subject.common_name``)."""
    return _first([_dn_values(_one(cols), opts.required_key())], opts)


def _dn(cols: Columns, _opts: Options) -> pa.Array:
    """A distinguished name with escaped commas dropped, as Elastic stores it."""
    return pc.replace_substring_regex(pc.cast(_one(cols), pa.string()), r"\\+,", "")


def _flags(cols: Columns, opts: Options) -> pa.Array:
    """Names of the true booleans, in order (``dns.header_flags`` from AA/TC/RD/RA).

    A row with no flag set is null, as Elastic leaves the field out.
    """
    names = list(opts.lookup_table().values())
    n = len(next(c for c in cols if c is not None))
    columns = [
        np.zeros(n, dtype=bool)
        if c is None
        else c.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        for c in cols
    ]
    matrix = np.stack(columns, axis=1)
    counts = matrix.sum(axis=1)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    which = np.nonzero(matrix)[1]
    labels = pa.array(names, pa.string()).take(pa.array(which, pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets), labels, mask=pa.array(counts == 0))


def _join_path(cols: Columns, _opts: Options) -> pa.Array:
    r"""``dir\name`` where both are known (SMB ``file.path``), else null."""
    if cols[0] is None or cols[1] is None:
        return pa.nulls(len(_one([c for c in cols if c is not None])), pa.string())
    base, name = pc.cast(cols[0], pa.string()), pc.cast(cols[1], pa.string())
    return pc.binary_join_element_wise(base, name, "\\")


def _where_equal(cols: Columns, opts: Options) -> pa.Array:
    """The first column where the second equals ``key``, else null (ICMP type and code)."""
    value = _one(cols)
    if len(cols) < _PAIR or cols[1] is None:
        return pa.nulls(len(value), value.type)
    match = pc.equal(pc.cast(cols[1], pa.string()), opts.required_key()).fill_null(False)
    return pc.if_else(match, value, pa.scalar(None, value.type))


def _choose(condition: pa.Array, opts: Options, yes: str, no: str) -> pa.Array:
    table = opts.lookup_table()
    return pc.if_else(
        condition, pa.scalar(table[yes], pa.string()), pa.scalar(table[no], pa.string())
    )


def _presence(cols: Columns, opts: Options) -> pa.Array:
    """Table entry ``present`` where the value is set, ``absent`` where not."""
    return _choose(pc.is_valid(_one(cols)), opts, "present", "absent")


def _is_equal(cols: Columns, opts: Options) -> pa.Array:
    """Table entry ``true`` where the value equals ``key`` (any case), else ``false``."""
    text = pc.utf8_lower(pc.cast(_one(cols), pa.string()))
    return _choose(pc.equal(text, opts.required_key().lower()), opts, "true", "false")


def _is_below(cols: Columns, opts: Options) -> pa.Array:
    """Table entry ``true`` where the number is below ``key``, else ``false`` (HTTP status)."""
    numbers = pc.cast(_to_int(cols, opts), pa.float64())
    return _choose(pc.less(numbers, float(opts.required_key())), opts, "true", "false")


def _ip_version(cols: Columns, opts: Options) -> pa.Array:
    """``ipv4`` or ``ipv6`` by an address's form; renamed through ``table`` if given."""
    text = pc.cast(_one(cols), pa.string())
    version = pc.if_else(
        pc.match_substring(text, ":"),
        pa.scalar("ipv6"),
        pc.if_else(pc.match_substring(text, "."), pa.scalar("ipv4"), pa.scalar(None, pa.string())),
    )
    return version if opts.table is None else _lookup([version], opts)


def _elapsed(cols: Columns, opts: Options) -> pa.Array:
    """Time from the first to the second timestamp, in ``key`` units (``ns`` or ``days``)."""
    start = _one(cols)
    if len(cols) < _PAIR or cols[1] is None:
        return pa.nulls(len(start), pa.int64())
    begin, end = (pc.cast(_timestamp([c], opts), TIMESTAMP) for c in (start, cols[1]))
    micros = pc.cast(pc.subtract(end, begin), pa.int64())
    if opts.required_key() == "days":
        return pc.cast(
            pc.round(pc.divide(pc.cast(micros, pa.float64()), _US_PER_DAY), round_mode="half_up"),
            pa.int64(),
        )
    nanos = pc.multiply(micros, 1000)
    return pc.if_else(pc.less(nanos, 0), pa.scalar(None, pa.int64()), nanos)


def _zip_answers(cols: Columns, _opts: Options) -> pa.Array:
    """Zeek ``answers`` and ``TTLs`` as ECS ``dns.answers`` ``[{data, ttl}]``.

    As in Elastic's pipeline, rows whose lists are empty or of different lengths get none.
    """
    answers = _combined(_one(cols))
    struct = pa.struct([("data", pa.string()), ("ttl", pa.int64())])
    if len(cols) < _PAIR or cols[1] is None:
        return pa.nulls(len(answers), pa.list_(struct))
    ttls = _combined(cols[1])
    lengths = _lengths(answers)
    ok = (lengths == _lengths(ttls)) & (lengths > 0)
    data = pc.filter(answers.flatten(), pa.array(ok[_parents(answers)]))
    ttl = pc.filter(ttls.flatten(), pa.array(ok[_parents(ttls)]))
    ttl = pc.cast(pc.trunc(pc.cast(ttl, pa.float64())), pa.int64())
    items = pa.StructArray.from_arrays([pc.cast(data, pa.string()), ttl], fields=list(struct))
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths * ok))).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, items, mask=pa.array(~ok))


_EVE_ANSWER: Final = (("name", "rrname"), ("type", "rrtype"), ("data", "rdata"), ("ttl", "ttl"))


def _eve_answers(cols: Columns, _opts: Options) -> pa.Array:
    """Eve v2/v3 ``answers`` (rrname, rrtype, rdata, ttl) as ECS ``dns.answers``."""
    answers = _combined(_one(cols))
    if not _is_list(answers) or not pa.types.is_struct(answers.type.value_type):
        return pa.nulls(
            len(answers), pa.list_(pa.struct([(n, pa.string()) for n, _ in _EVE_ANSWER]))
        )
    items = answers.flatten()
    names = {items.type.field(i).name for i in range(items.type.num_fields)}
    arrays, fields = [], []
    for name, source in _EVE_ANSWER:
        kind = pa.int64() if name == "ttl" else pa.string()
        column = pc.struct_field(items, source) if source in names else pa.nulls(len(items))
        arrays.append(safe_cast(column, kind).values)
        fields.append(pa.field(name, kind))
    rebuilt = _regroup(
        pa.StructArray.from_arrays(arrays, fields=fields),
        _parents(answers),
        len(answers),
        empty_is_null=False,
    )
    return pc.if_else(pc.is_null(answers), pa.scalar(None, rebuilt.type), rebuilt)


#: Every transform a mapping table may name.
TRANSFORMS: Final[dict[str, Transform]] = {
    "identity": _identity,
    "lower": _lower,
    "to_string": _to_string,
    "to_int": _to_int,
    "constant": _constant,
    "seconds_to_ns": _seconds_to_ns,
    "timestamp": _timestamp,
    "date": _date,
    "elapsed": _elapsed,
    "lookup": _lookup,
    "lookup_list": _lookup_list,
    "presence": _presence,
    "is_equal": _is_equal,
    "is_below": _is_below,
    "where_equal": _where_equal,
    "sum": _sum,
    "coalesce": _coalesce,
    "collect": _collect,
    "wrap": _wrap,
    "first": _first,
    "ips": _ips,
    "pluck": _pluck,
    "first_field": _first_field,
    "zip_answers": _zip_answers,
    "eve_answers": _eve_answers,
    "extract": _extract,
    "url_path": _url_path,
    "url_query": _url_query,
    "strip_prefix": _strip_prefix,
    "rstrip": _rstrip,
    "hex_upper": _hex_upper,
    "mac": _mac,
    "ip_version": _ip_version,
    "dn": _dn,
    "dn_part": _dn_part,
    "dn_parts": _dn_parts,
    "flags": _flags,
    "join_path": _join_path,
}
