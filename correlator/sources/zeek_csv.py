"""Zeek logs converted to CSV (IoT-23's published form) into the same raw batches as TSV.

The first line names the Zeek fields (``ts,uid,id.orig_h,…``) and any extra columns (the
labels ``label``, ``detailed-label``). Cells hold Zeek's text values as the TSV writer
prints them, except that converters wrote an unset value as an empty cell (IoT-23 keeps
``-`` in some columns and writes ``(empty)`` or nothing for an empty set). Types come from
the known schema of the log (``zeek_types.toml``), so normalisation converts the cells with
the TSV code path and the events equal those of the original ``conn.log``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from correlator.normalise.zeek_schema import known_types
from correlator.sources.base import LogFormat, RawBatch, Reject
from correlator.sources.blocks import Block
from correlator.sources.lines import screen, select
from correlator.sources.zeek_tsv import TsvHeader, parse_rows

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
    batch, bad = parse_rows(
        select(block, usable), header, path, file_key, log_format=LogFormat.ZEEK_CSV
    )
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
