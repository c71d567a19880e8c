"""JSON-lines logs (Zeek JSON, Suricata eve.json) into columnar batches.

Arrow's JSON reader parses a whole block at C speed but fails the block on one bad line or
on a field whose type changes between lines. Only then does this module bisect the block to
isolate the culprits, so the common case never touches a line from Python.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.json as pjson

from correlator.sources.base import LogFormat, RawBatch, Reject
from correlator.sources.blocks import Block
from correlator.sources.lines import Selection, first_bytes, reject, reject_at, screen, select

_BRACE: Final = ord("{")
_STATS: Final = re.compile(rb'"event_type"\s*:\s*"stats"')


@dataclass(slots=True)
class JsonBlockResult:
    """Batches and rejects from one block, and the lines skipped on purpose."""

    batches: list[RawBatch]
    rejects: list[Reject]
    skipped: int


def read_json_block(
    block: Block,
    *,
    fmt: LogFormat,
    log_type: str,
    path: str,
    file_key: str,
    explicit_schema: pa.Schema | None,
    zeek_types: dict[str, str],
    max_line_bytes: int,
) -> JsonBlockResult:
    """Parse one block of a JSON-lines log.

    Args:
        block: whole lines of the file.
        fmt: Zeek JSON or Suricata eve.
        log_type: the Zeek log type, or ``eve``.
        path: the file, for locations.
        file_key: the file's identity.
        explicit_schema: types to impose on known fields (others are inferred).
        zeek_types: Zeek types of known fields, passed on to normalisation.
        max_line_bytes: longest line accepted.

    Returns:
        The parsed batches (several only when the block had to be split), the rejected
        lines, and the count of lines skipped on purpose (Suricata ``stats``).
    """
    usable, rejects = screen(block, path, max_line_bytes)
    not_object = usable & (first_bytes(block) != _BRACE)
    for index in np.flatnonzero(not_object):
        rejects.append(reject(block, int(index), path, "not a JSON object"))
    keep = usable & ~not_object
    skipped = 0
    if fmt is LogFormat.SURICATA_EVE:
        stats = _stats_lines(block)
        skipped = int((keep & stats).sum())
        keep &= ~stats
    batches: list[RawBatch] = []
    if keep.any():
        selection = select(block, keep)
        raw = selection.raw_lines()
        for table, rows in _parse_bisect(selection, explicit_schema, path, rejects):
            batches.append(
                RawBatch(
                    format=fmt,
                    log_type=log_type,
                    table=table,
                    zeek_types=zeek_types,
                    path=path,
                    file_key=file_key,
                    lines=pa.array(selection.lines[rows]),
                    offsets=pa.array(selection.offsets[rows]),
                    raw=raw.take(pa.array(rows)),
                )
            )
    return JsonBlockResult(batches=batches, rejects=rejects, skipped=skipped)


def _stats_lines(block: Block) -> npt.NDArray[np.bool_]:
    marks = np.zeros(len(block.starts), dtype=bool)
    positions = [m.start() for m in _STATS.finditer(block.data)]  # a few per 8 s of traffic
    if positions:
        marks[np.searchsorted(block.starts, positions, side="right") - 1] = True
    return marks


def _parse_bisect(
    selection: Selection, schema: pa.Schema | None, path: str, rejects: list[Reject]
) -> Iterator[tuple[pa.Table, npt.NDArray[np.int64]]]:
    """Parse a selection, splitting it in halves around lines Arrow cannot take."""
    line_stops = np.flatnonzero(np.frombuffer(selection.data, dtype=np.uint8) == ord("\n")) + 1
    line_starts = np.concatenate(([0], line_stops[:-1]))
    pending = [(0, len(selection.lines))]
    while pending:
        first, stop = pending.pop()
        chunk = selection.data[int(line_starts[first]) : int(line_stops[stop - 1])]
        try:
            table = _read(chunk, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            if stop - first > 1:
                middle = (first + stop) // 2
                pending.extend([(middle, stop), (first, middle)])
                continue
            rejects.append(reject_at(selection, first, path, _json_reason(chunk, error), chunk))
            continue
        if table.num_rows != stop - first:  # a line Arrow read as no record at all
            if stop - first > 1:
                middle = (first + stop) // 2
                pending.extend([(middle, stop), (first, middle)])
            else:
                rejects.append(reject_at(selection, first, path, "no record in line", chunk))
            continue
        yield table, np.arange(first, stop, dtype=np.int64)


def _read(chunk: bytes, schema: pa.Schema | None) -> pa.Table:
    return pjson.read_json(
        io.BytesIO(chunk),
        read_options=pjson.ReadOptions(use_threads=False, block_size=max(len(chunk) + 1, 1 << 16)),
        parse_options=pjson.ParseOptions(
            explicit_schema=schema,
            unexpected_field_behavior="infer",
            newlines_in_values=False,
        ),
    )


def _json_reason(line: bytes, error: Exception) -> str:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as decode_error:
        return f"invalid JSON: {decode_error}"
    if not isinstance(value, dict):
        return "not a JSON object"
    return f"field of an unexpected type: {error}"
