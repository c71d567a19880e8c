r"""Zeek's log value types and their vectorised conversion to Arrow.

Zeek TSV writes every value as text: ``-`` for unset, ``(empty)`` for an empty string or
container, ``,`` between container elements and ``\xNN`` escapes for bytes that would be
ambiguous (a literal ``-``, a ``,`` inside an element, non-printable bytes). Zeek JSON writes
typed values, with times either as epoch seconds or ISO 8601 strings
(``JSON::TS_ISO8601``). Both paths end in the same Arrow types, rounded to the microsecond
that Zeek TSV prints, so the two renderings of one log normalise to identical events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.event import TIMESTAMP

_SCALARS: Final[dict[str, pa.DataType]] = {
    "time": TIMESTAMP,
    "interval": pa.float64(),
    "double": pa.float64(),
    "count": pa.int64(),
    "int": pa.int64(),
    "port": pa.int32(),
    "bool": pa.bool_(),
}
_CONTAINER = re.compile(r"^(set|vector)\[(.+)\]$")
_TSV_ESCAPE = re.compile(rb"\\\\|\\x[0-9a-fA-F]{2}")
# control characters Zeek's JSON writer keeps as \xNN text (it writes \n, \t ... as such)
_CONTROL = re.compile(r"[\x00-\x07\x0b\x0e-\x1f\x7f]")
_MICRO: Final = 1_000_000
#: Zeek prints interval and double values with six decimals.
_DECIMALS: Final = 6


def element_type(zeek_type: str) -> str | None:
    """The element type of a ``set[T]`` or ``vector[T]``, else ``None``."""
    match = _CONTAINER.match(zeek_type)
    return match.group(2) if match else None


def arrow_type(zeek_type: str) -> pa.DataType:
    """The Arrow type a Zeek type normalises to (unknown types become strings)."""
    inner = element_type(zeek_type)
    if inner is not None:
        return pa.list_(arrow_type(inner))
    return _SCALARS.get(zeek_type, pa.string())


def json_parse_type(zeek_type: str) -> pa.DataType | None:
    """The type to declare to the JSON parser, or ``None`` to let it infer.

    Times are left to inference because Zeek writes them either as numbers or as strings.
    """
    inner = element_type(zeek_type)
    if inner is not None:
        inner_type = json_parse_type(inner)
        return None if inner_type is None else pa.list_(inner_type)
    if zeek_type == "time":
        return None
    if zeek_type == "port":
        return pa.int64()
    return _SCALARS.get(zeek_type, pa.string())


@dataclass(frozen=True, slots=True)
class Converted:
    """A converted column and the rows whose value did not fit the declared type."""

    values: pa.Array
    invalid: pa.Array  # bool, true where the raw value was malformed


@dataclass(frozen=True, slots=True)
class TsvMarkers:
    """The markers a Zeek TSV header declares."""

    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"


def convert_tsv(raw: pa.Array, zeek_type: str, markers: TsvMarkers) -> Converted:
    """Convert one Zeek TSV text column to its Arrow type.

    Args:
        raw: the column as strings, unset values already null.
        zeek_type: the type from the ``#types`` header.
        markers: the header's separators and markers.

    Returns:
        The typed column and a mask of malformed values (those become null).
    """
    inner = element_type(zeek_type)
    if inner is not None:
        return _convert_tsv_container(raw, inner, markers)
    if zeek_type in _SCALARS:
        return _convert_scalar_text(raw, zeek_type)
    is_empty = pc.equal(raw, markers.empty_field)
    text = pc.if_else(is_empty, pa.scalar("", pa.string()), raw)
    return Converted(unescape(text), _no_invalid(len(raw)))


def convert_json(raw: pa.Array, zeek_type: str) -> Converted:
    """Bring one column parsed from Zeek JSON to the same Arrow type as the TSV path.

    Args:
        raw: the column as the JSON parser produced it.
        zeek_type: the field's Zeek type, from the known schema of the log.

    Returns:
        The typed column and a mask of malformed values.
    """
    target = arrow_type(zeek_type)
    if zeek_type == "time":
        return _time_from_json(raw)
    inner = element_type(zeek_type)
    if inner is not None and pa.types.is_list(raw.type):
        values = raw.values if isinstance(raw, pa.ListArray) else raw
        if inner in ("interval", "double"):
            values = pc.round(pc.cast(values, pa.float64()), _DECIMALS)
        elif inner == "time":
            values = _time_from_json(values).values
        rebuilt = pa.ListArray.from_arrays(
            raw.offsets, pc.cast(values, target.value_type), mask=raw.is_null()
        )
        return Converted(_without_lone_empty(rebuilt), _no_invalid(len(raw)))
    if zeek_type in ("interval", "double") and _is_numeric(raw.type):
        return Converted(pc.round(pc.cast(raw, pa.float64()), _DECIMALS), _no_invalid(len(raw)))
    if raw.type == target:
        return Converted(raw, _no_invalid(len(raw)))
    if pa.types.is_null(raw.type):
        return Converted(pa.nulls(len(raw), target), _no_invalid(len(raw)))
    if pa.types.is_string(raw.type) and target != pa.string():
        return _convert_scalar_text(raw, zeek_type)
    return safe_cast(raw, target)


def _without_lone_empty(lists: pa.Array) -> pa.Array:
    """``[""]`` as ``[]``: Zeek TSV writes both as ``(empty)``, so they cannot differ."""
    if not pa.types.is_string(lists.type.value_type):
        return lists
    single = (
        pc.equal(pc.list_value_length(lists), 1).fill_null(False).to_numpy(zero_copy_only=False)
    )
    if not single.any():
        return lists
    starts = lists.offsets.to_numpy()[:-1][single]
    firsts = lists.values.take(pa.array(starts))
    lone = np.zeros(len(lists), dtype=bool)
    lone[np.flatnonzero(single)] = (
        pc.equal(firsts, "").fill_null(False).to_numpy(zero_copy_only=False)
    )
    if not lone.any():
        return lists
    empty = pa.scalar([], lists.type)
    return pc.if_else(pa.array(lone), empty, lists)


def unescape(text: pa.Array) -> pa.Array:
    r"""Decode Zeek TSV escapes (``\xNN``, ``\\``), touching only the rows that hold one.

    The result matches what Zeek's JSON writer logs for the same value: bytes that are not
    UTF-8, and control characters other than newline, tab and friends, stay written as
    ``\xNN`` text.
    """
    has_escape = pc.match_substring(text, "\\")
    if not pc.any(has_escape).as_py():
        return text
    rows = np.flatnonzero(has_escape.fill_null(False).to_numpy(zero_copy_only=False))
    values = text.to_pylist()
    for row in rows:  # only rows with an escape, a small minority
        values[row] = _decode(values[row])
    return pa.array(values, pa.string())


def _decode(value: str) -> str:
    raw = _TSV_ESCAPE.sub(_unescape_match, value.encode("utf-8"))
    decoded = raw.decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", decoded)


def _unescape_match(match: re.Match[bytes]) -> bytes:
    token = match.group(0)
    return b"\\" if token == b"\\\\" else bytes([int(token[2:], 16)])


def _convert_tsv_container(raw: pa.Array, inner: str, markers: TsvMarkers) -> Converted:
    is_empty = pc.equal(raw, markers.empty_field).fill_null(False)
    source = pc.if_else(is_empty, pa.scalar(None, pa.string()), raw)
    parts = pc.split_pattern(source, markers.set_separator)
    parts = pc.if_else(is_empty, pa.scalar([], pa.list_(pa.string())), parts)
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    flat = parts.values
    converted = (
        _convert_scalar_text(flat, inner)
        if inner in _SCALARS
        else Converted(unescape(flat), _no_invalid(len(flat)))
    )
    rebuilt = pa.ListArray.from_arrays(parts.offsets, converted.values, mask=parts.is_null())
    if pc.any(converted.invalid).as_py():
        owner = pc.list_parent_indices(parts)
        bad_rows = np.unique(owner.to_numpy()[converted.invalid.to_numpy(zero_copy_only=False)])
        invalid = np.zeros(len(raw), dtype=bool)
        invalid[bad_rows] = True
        return Converted(rebuilt, pa.array(invalid))
    return Converted(rebuilt, _no_invalid(len(raw)))


def _convert_scalar_text(raw: pa.Array, zeek_type: str) -> Converted:
    if zeek_type == "time":
        return _time_from_epoch_text(raw)
    if zeek_type == "bool":
        values = pc.equal(raw, "T")
        invalid = pc.and_(pc.is_valid(raw), pc.invert(pc.is_in(raw, pa.array(["T", "F"]))))
        return Converted(values, invalid.fill_null(False))
    target = _SCALARS[zeek_type]
    if zeek_type in ("interval", "double"):
        converted = safe_cast(raw, pa.float64())
        return Converted(pc.round(converted.values, _DECIMALS), converted.invalid)
    return safe_cast(raw, target)


def _time_from_epoch_text(raw: pa.Array) -> Converted:
    seconds = safe_cast(raw, pa.float64())
    return Converted(_epoch_to_timestamp(seconds.values), seconds.invalid)


def _time_from_json(raw: pa.Array) -> Converted:
    if _is_numeric(raw.type):
        return Converted(_epoch_to_timestamp(pc.cast(raw, pa.float64())), _no_invalid(len(raw)))
    if pa.types.is_timestamp(raw.type):
        return Converted(pc.cast(raw, TIMESTAMP), _no_invalid(len(raw)))
    if pa.types.is_null(raw.type):
        return Converted(pa.nulls(len(raw), TIMESTAMP), _no_invalid(len(raw)))
    text = pc.cast(raw, pa.string())
    looks_epoch = pc.match_substring_regex(text, r"^\d+(\.\d+)?$").fill_null(False)
    if pc.all(looks_epoch).as_py():
        return _time_from_epoch_text(text)
    return safe_cast(text, TIMESTAMP)


def _epoch_to_timestamp(seconds: pa.Array) -> pa.Array:
    # round to the microsecond: a float64 epoch is off by a fraction of one
    micros = pc.round(pc.multiply(seconds, float(_MICRO)))
    return pc.cast(pc.cast(micros, pa.int64()), TIMESTAMP)


def safe_cast(raw: pa.Array, target: pa.DataType) -> Converted:
    """Cast, and on failure find the offending rows instead of failing the batch."""
    try:
        return Converted(pc.cast(raw, target), _no_invalid(len(raw)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[object] = []
    invalid = np.zeros(len(raw), dtype=bool)
    for row, value in enumerate(raw.to_pylist()):  # slow path: only for a batch with bad values
        if value is None:
            values.append(None)
            continue
        try:
            values.append(pc.cast(pa.array([value]), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            values.append(None)
            invalid[row] = True
    return Converted(pa.array(values, target), pa.array(invalid))


def _is_numeric(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(data_type) or pa.types.is_floating(data_type))


def _no_invalid(length: int) -> pa.Array:
    return pa.array(np.zeros(length, dtype=bool))
