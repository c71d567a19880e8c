"""Zeek logs converted to CSV (IoT-23's published form) into the same raw batches as TSV.

The first line names the Zeek fields (``ts,uid,id.orig_h,…``) and any extra columns (the
labels ``label``, ``detailed-label``). Cells hold Zeek's text values as the TSV writer
prints them, except that converters wrote an unset value as an empty cell (IoT-23 keeps
``-`` in some columns and writes ``(empty)`` or nothing for an empty set). Types come from
the known schema of the log (``zeek_types.toml``), so normalisation converts the cells with
the TSV code path and the events equal those of the original ``conn.log``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from correlator.normalise.zeek_schema import known_types
from correlator.sources.base import LogFormat, RawBatch, Reject
from correlator.sources.blocks import Block
from correlator.sources.lines import Selection, reject_at, screen, select
from correlator.sources.zeek_tsv import TsvHeader

#: Fields whose presence in a CSV header marks a Zeek log (``recognise`` uses them).
ZEEK_CSV_FIELDS: Final = frozenset({"ts", "uid", "id.orig_h"})


def csv_fields(first_line: bytes) -> tuple[str, ...]:
    """The column names of a CSV header line."""
    text = first_line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    return tuple(name.strip().strip('"') for name in text.split(","))


def csv_log_type(fields: tuple[str, ...], fallback: str) -> str:
    """The Zeek log a CSV header comes from: ``conn`` when it has the conn fields."""
    if {"conn_state", "id.resp_p", "proto"} <= set(fields):
        return "conn"
    return fallback


@dataclass(slots=True)
class CsvBlockResult:
    """Batches and rejects from one block, and the header in force after it."""

    batches: list[RawBatch]
    rejects: list[Reject]
    header: TsvHeader | None


def read_csv_block(
    block: Block,
    header: TsvHeader | None,
    *,
    path: str,
    file_key: str,
    log_type: str,
    max_line_bytes: int,
) -> CsvBlockResult:
    """Parse one block of a Zeek CSV log.

    Args:
        block: whole lines of the file.
        header: the header read from the file's first line (from a checkpoint or the
            previous block), or ``None`` at the start of the file.
        path: the file, for locations.
        file_key: the file's identity.
        log_type: the recognised Zeek log type.
        max_line_bytes: longest line accepted.

    Returns:
        The block's batch (if any row parsed), the rejected lines and the header.
    """
    usable, rejects = screen(block, path, max_line_bytes)
    if header is None:
        first = int(np.flatnonzero(usable)[0]) if usable.any() else None
        if first is None:
            return CsvBlockResult([], rejects, None)
        header = _header(csv_fields(block.line(first)), log_type)
        usable[first] = False
    if not usable.any():
        return CsvBlockResult([], rejects, header)
    batch, bad = _parse(select(block, usable), header, path, file_key)
    rejects.extend(bad)
    return CsvBlockResult([batch] if batch is not None else [], rejects, header)


def _header(fields: tuple[str, ...], log_type: str) -> TsvHeader:
    """A header for the CSV columns, typed by the known schema (others stay strings)."""
    types = known_types(log_type)
    return TsvHeader(
        fields=fields,
        types=tuple(types.get(name, "string") for name in fields),
        path=log_type,
        separator=",",
    )


def _parse(
    selection: Selection, header: TsvHeader, path: str, file_key: str
) -> tuple[RawBatch | None, list[Reject]]:
    invalid: list[tuple[int | None, int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(selection.data),
        read_options=pcsv.ReadOptions(
            column_names=list(header.fields),
            use_threads=False,
            block_size=max(len(selection.data) + 1, 1 << 16),
        ),
        parse_options=pcsv.ParseOptions(
            delimiter=",",
            newlines_in_values=False,
            ignore_empty_lines=True,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(header.fields, pa.string()),
            # converters wrote Zeek's unset value either as "-" or as an empty cell
            null_values=["", header.unset_field],
            strings_can_be_null=True,
            check_utf8=False,
        ),
    )
    rejects: list[Reject] = []
    kept = np.ones(len(selection.lines), dtype=bool)
    for number, actual, text in invalid:
        row = (number - 1) if number is not None else _row_of(selection.data, text)
        kept[row] = False
        reason = f"expected {len(header.fields)} CSV fields, found {actual}"
        rejects.append(reject_at(selection, row, path, reason, text.encode()))
    if not table.num_rows:
        return None, rejects
    batch = RawBatch(
        format=LogFormat.ZEEK_CSV,
        log_type=header.path,
        table=table,
        zeek_types=dict(zip(header.fields, header.types, strict=True)),
        path=path,
        file_key=file_key,
        lines=pa.array(selection.lines[kept]),
        offsets=pa.array(selection.offsets[kept]),
        raw=selection.raw_lines().filter(pa.array(kept)),
        tsv_markers=(header.set_separator, header.empty_field, header.unset_field),
    )
    return batch, rejects


def _row_of(data: bytes, text: str) -> int:
    needle = text.encode()
    lines = data.split(b"\n")
    return next(i for i, line in enumerate(lines) if line.rstrip(b"\r") == needle)
