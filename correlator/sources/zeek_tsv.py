"""Zeek TSV logs (the ASCII writer's default) into columnar batches.

Header lines (``#separator``, ``#fields``, ``#types`` …) may appear again inside a file
(logs concatenated, or a writer restarted); each new header applies to the lines after it.
``#open`` and ``#close`` lines are skipped. Values stay text here; ``normalise`` converts
them to the types of ``#types``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv

from correlator.sources.base import LogFormat, RawBatch, Reject
from correlator.sources.blocks import Block
from correlator.sources.lines import Selection, first_bytes, reject, reject_at, screen, select

_HASH: Final = ord("#")
_HEADER_KEYS: Final = frozenset(
    {
        "separator",
        "set_separator",
        "empty_field",
        "unset_field",
        "path",
        "open",
        "close",
        "fields",
        "types",
    }
)


@dataclass(frozen=True, slots=True)
class TsvHeader:
    """One Zeek TSV header: the column names and types, separators and markers."""

    fields: tuple[str, ...]
    types: tuple[str, ...]
    path: str = ""
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"

    def to_state(self) -> str:
        """Serialise for a checkpoint, so a resumed read knows the columns."""
        return orjson.dumps(
            {
                "fields": self.fields,
                "types": self.types,
                "path": self.path,
                "separator": self.separator,
                "set_separator": self.set_separator,
                "empty_field": self.empty_field,
                "unset_field": self.unset_field,
            }
        ).decode()

    @classmethod
    def from_state(cls, state: str) -> TsvHeader:
        """Rebuild a header saved by ``to_state``."""
        raw = orjson.loads(state)
        return cls(
            fields=tuple(raw["fields"]),
            types=tuple(raw["types"]),
            path=raw["path"],
            separator=raw["separator"],
            set_separator=raw["set_separator"],
            empty_field=raw["empty_field"],
            unset_field=raw["unset_field"],
        )


@dataclass(slots=True)
class HeaderBuilder:
    """Collects header lines, which may straddle two blocks, into a ``TsvHeader``."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, line: str) -> None:
        """Take one ``#key<separator>value`` header line (``#separator <escaped>`` first)."""
        separator = " " if line.startswith("#separator") else self.values.get("separator", "\t")
        key, _, value = line[1:].partition(separator)
        if key == "separator":
            self.values.clear()
            value = _decode_escapes(value)
        self.values[key] = value

    def build(self, previous: TsvHeader | None) -> TsvHeader | None:
        """The header collected so far, or ``previous`` while it is incomplete."""
        if "fields" not in self.values or "types" not in self.values:
            return previous
        sep = self.values.get("separator", "\t")
        header = TsvHeader(
            fields=tuple(self.values["fields"].split(sep)),
            types=tuple(self.values["types"].split(sep)),
            path=self.values.get("path", ""),
            separator=sep,
        )
        return replace(
            header,
            set_separator=self.values.get("set_separator", header.set_separator),
            empty_field=self.values.get("empty_field", header.empty_field),
            unset_field=self.values.get("unset_field", header.unset_field),
        )


@dataclass(slots=True)
class TsvBlockResult:
    """Batches and rejects from one block, and the header in force after it."""

    batches: list[RawBatch]
    rejects: list[Reject]
    header: TsvHeader | None


def read_tsv_block(
    block: Block,
    header: TsvHeader | None,
    builder: HeaderBuilder,
    *,
    path: str,
    file_key: str,
    fallback_log_type: str,
    max_line_bytes: int,
) -> TsvBlockResult:
    """Parse one block of a Zeek TSV log.

    Args:
        block: whole lines of the file.
        header: the header in force at the block's start (from a checkpoint or the
            previous block), or ``None`` at the start of a file.
        builder: collects header lines; kept by the caller across blocks.
        path: the file, for locations.
        file_key: the file's identity.
        fallback_log_type: log type to use when the header has no ``#path``.
        max_line_bytes: longest line accepted.

    Returns:
        One batch per header section in the block, the rejected lines and the header in
        force at the block's end.
    """
    usable, rejects = screen(block, path, max_line_bytes)
    comment = (first_bytes(block) == _HASH) & usable
    batches: list[RawBatch] = []
    segment_start = 0
    boundaries = [*np.flatnonzero(comment).tolist(), len(block.starts)]
    for boundary in boundaries:
        segment = np.zeros(len(block.starts), dtype=bool)
        segment[segment_start:boundary] = True
        keep = usable & segment & ~comment
        if keep.any():
            if header is None:
                rejects.extend(
                    reject(block, int(i), path, "data line before any Zeek #fields/#types header")
                    for i in np.flatnonzero(keep)
                )
            else:
                batch, bad = _parse(select(block, keep), header, path, file_key, fallback_log_type)
                rejects.extend(bad)
                if batch is not None:
                    batches.append(batch)
        if boundary < len(block.starts):
            text = block.line(boundary).decode("utf-8")
            key = re.split(r"[^a-z_]", text[1:], maxsplit=1)[0]
            if key not in _HEADER_KEYS:
                rejects.append(reject(block, boundary, path, f"unknown header line #{key}"))
            elif key not in ("open", "close"):
                builder.add(text)
                header = builder.build(header)
        segment_start = boundary + 1
    return TsvBlockResult(batches=batches, rejects=rejects, header=header)


def _parse(
    selection: Selection, header: TsvHeader, path: str, file_key: str, fallback_log_type: str
) -> tuple[RawBatch | None, list[Reject]]:
    return parse_rows(
        selection, header, path, file_key, log_format=LogFormat.ZEEK_TSV, fallback=fallback_log_type
    )


def parse_rows(
    selection: Selection,
    header: TsvHeader,
    path: str,
    file_key: str,
    *,
    log_format: LogFormat,
    fallback: str = "",
) -> tuple[RawBatch | None, list[Reject]]:
    """Parse the selected data lines under ``header``; rows of the wrong width are rejects.

    Zeek's TSV has no quoting and one unset marker; the CSV of converted datasets (IoT-23)
    quotes values and writes unset either as ``-`` or as an empty cell.
    """
    invalid: list[tuple[int | None, int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    quoted = log_format is LogFormat.ZEEK_CSV
    table = pcsv.read_csv(
        io.BytesIO(selection.data),
        read_options=pcsv.ReadOptions(
            column_names=list(header.fields),
            use_threads=False,
            block_size=max(len(selection.data) + 1, 1 << 16),
        ),
        parse_options=pcsv.ParseOptions(
            delimiter=header.separator,
            quote_char='"' if quoted else False,
            double_quote=quoted,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(header.fields, pa.string()),
            null_values=["", header.unset_field] if quoted else [header.unset_field],
            strings_can_be_null=True,
            check_utf8=False,
        ),
    )
    rejects: list[Reject] = []
    kept = np.ones(len(selection.lines), dtype=bool)
    kind = "CSV fields" if quoted else "fields"
    for number, actual, text in invalid:
        row = _row_of(selection, number, text)
        kept[row] = False
        reason = f"expected {len(header.fields)} {kind}, found {actual}"
        rejects.append(reject_at(selection, row, path, reason, text.encode()))
    if not table.num_rows:
        return None, rejects
    batch = RawBatch(
        format=log_format,
        log_type=header.path or fallback,
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


def _row_of(selection: Selection, number: int | None, text: str) -> int:
    """The selection row of an invalid CSV row (Arrow numbers physical rows from 1)."""
    if number is not None:
        return number - 1
    needle = text.encode()
    lines = selection.data.split(b"\n")
    return next(i for i, line in enumerate(lines) if line.rstrip(b"\r") == needle)


def _decode_escapes(value: str) -> str:
    return value.encode("ascii", errors="replace").decode("unicode_escape")
