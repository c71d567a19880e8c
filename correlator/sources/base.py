"""What a source hands to normalisation: parsed records of one log, with their origin."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Protocol

import pyarrow as pa

from correlator.errors import Location


class LogFormat(enum.StrEnum):
    """The on-disk formats Furui reads."""

    ZEEK_TSV = "zeek-tsv"
    ZEEK_JSON = "zeek-json"
    ZEEK_CSV = "zeek-csv"  # Zeek fields as CSV with a header row (IoT-23's published form)
    SURICATA_EVE = "suricata-eve"


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that could not be read or normalised, kept aside with its reason.

    Attributes:
        location: file and line of the record.
        offset: byte offset of the line in the decompressed file.
        reason: why it was rejected, for a human.
        text: the first bytes of the raw record.
    """

    location: Location
    offset: int
    reason: str
    text: bytes


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Parsed records of one log type from one file, not yet normalised.

    Attributes:
        format: the file's format.
        log_type: Zeek ``#path`` (``conn``, ``dns`` …) or ``eve``.
        table: one row per record, columns named as in the log (``id.orig_h``,
            ``alert.signature``); Zeek TSV columns are still text.
        zeek_types: Zeek type per column where known (TSV ``#types`` or the known schema).
        path: the file, as given by the user.
        file_key: stable identity of the file's content (see ``sources.files``).
        lines: 1-based line number of each row.
        offsets: byte offset of each row's line.
        raw: the raw line of each row (binary), kept for quarantining rows that fail
            normalisation; a view of the block's buffer, not a copy.
        rejects: records of this block that could not be parsed.
        tsv_markers: set separator and markers of a Zeek TSV header.
    """

    format: LogFormat
    log_type: str
    table: pa.Table
    zeek_types: dict[str, str]
    path: str
    file_key: str
    lines: pa.Array
    offsets: pa.Array
    raw: pa.Array
    rejects: list[Reject] = field(default_factory=list)
    tsv_markers: tuple[str, str, str] = (",", "(empty)", "-")

    def filter(self, keep: pa.Array) -> RawBatch:
        """The rows where ``keep`` is true, with their origins."""
        return replace(
            self,
            table=self.table.filter(keep),
            lines=self.lines.filter(keep),
            offsets=self.offsets.filter(keep),
            raw=self.raw.filter(keep),
        )

    def text(self, row: int) -> bytes:
        """The raw line of ``row``, without its line ending."""
        value = self.raw[row].as_py()
        return bytes(value or b"").rstrip(b"\r\n")


class Progress(Protocol):
    """Receives progress while a source reads (bytes of the current file consumed)."""

    def advance(self, nbytes: int) -> None:
        """Report ``nbytes`` more bytes read."""
