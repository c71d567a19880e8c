"""Read one recognised log file block by block, from a checkpoint, into raw batches."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa

from correlator.errors import InputError
from correlator.normalise.zeek_schema import json_schema_for, known_types
from correlator.sources.base import LogFormat, RawBatch, Reject
from correlator.sources.blocks import LogStream, TruncatedInputError, iter_blocks, open_stream
from correlator.sources.files import LogFile
from correlator.sources.ndjson import read_json_block
from correlator.sources.zeek_csv import read_csv_block
from correlator.sources.zeek_tsv import HeaderBuilder, TsvHeader, read_tsv_block


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading of a file stands: the resume point stored in a checkpoint.

    Attributes:
        offset: byte offset in the decompressed file.
        line: 1-based number of the next line.
        state: reader state to restore (the Zeek TSV header in force), or empty.
    """

    offset: int = 0
    line: int = 1
    state: str = ""
    check: str = ""


_CHECK_BYTES: Final = 256
_BOM: Final = b"\xef\xbb\xbf"


class IdentityMismatchError(Exception):
    """The file at a checkpoint's key is not the file that was read: its bytes differ."""


def tail_check(data: bytes) -> str:
    """Fingerprint of the bytes just before a checkpoint: ``<length>:<sha256>``."""
    tail = data[-_CHECK_BYTES:]
    return f"{len(tail)}:{hashlib.sha256(tail).hexdigest()[:32]}"


@dataclass(slots=True)
class BlockRead:
    """The outcome of reading one block: what to store, and where to resume after it."""

    batches: list[RawBatch]
    rejects: list[Reject]
    skipped: int
    position: Position
    disk_offset: int
    error: str | None = field(default=None)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds on reading: block size and the longest line accepted."""

    block_bytes: int = 4 << 20
    max_line_bytes: int = 16 << 20


def read_log(
    log: LogFile, start: Position, limits: ReadLimits, *, key: str | None = None
) -> Iterator[BlockRead]:
    """Read ``log`` from ``start`` to its end, one block at a time.

    A file that cannot be read to its end (a truncated gzip) yields every whole line before
    the damage, then a final ``BlockRead`` carrying ``error``.

    Args:
        log: the file and its recognised format.
        start: where to resume.
        limits: block and line size bounds.
        key: the file's key in the store (event ids derive from it); default its identity.

    Yields:
        One ``BlockRead`` per block, in file order.

    Raises:
        IdentityMismatchError: before anything is read, when the bytes before ``start``
            are not those the checkpoint saw (another file that begins the same way).
    """
    file_key = key or log.identity.key
    path = str(log.path)
    header = TsvHeader.from_state(start.state) if start.state else None
    builder = HeaderBuilder()
    types = known_types(log.log_type) if log.format is LogFormat.ZEEK_JSON else {}
    schema = _json_schema(log)
    with open_stream(Path(log.path)) as stream:
        start = _verify(stream, start, path)
        position = start
        blocks = iter_blocks(
            stream,
            block_bytes=limits.block_bytes,
            max_line_bytes=limits.max_line_bytes,
            start_offset=start.offset,
            start_line=start.line,
            positioned=True,
        )
        try:
            for block in blocks:
                if log.format is LogFormat.ZEEK_TSV:
                    tsv = read_tsv_block(
                        block,
                        header,
                        builder,
                        path=path,
                        file_key=file_key,
                        fallback_log_type=log.log_type,
                        max_line_bytes=limits.max_line_bytes,
                    )
                    header = tsv.header
                    batches, rejects, skipped = tsv.batches, tsv.rejects, 0
                elif log.format is LogFormat.ZEEK_CSV:
                    csv = read_csv_block(
                        block,
                        header,
                        path=path,
                        file_key=file_key,
                        log_type=log.log_type,
                        max_line_bytes=limits.max_line_bytes,
                    )
                    header = csv.header
                    batches, rejects, skipped = csv.batches, csv.rejects, 0
                else:
                    result = read_json_block(
                        block,
                        fmt=log.format,
                        log_type=log.log_type,
                        path=path,
                        file_key=file_key,
                        explicit_schema=schema,
                        zeek_types=types,
                        max_line_bytes=limits.max_line_bytes,
                    )
                    batches, rejects, skipped = result.batches, result.rejects, result.skipped
                position = Position(
                    block.end_offset,
                    block.next_line,
                    header.to_state() if header else "",
                    "" if block.oversized else tail_check(block.data),
                )
                yield BlockRead(batches, rejects, skipped, position, stream.disk_position())
        except TruncatedInputError as error:
            yield BlockRead([], [], 0, position, stream.disk_position(), error=str(error))


#: Different files beginning with the same bytes that one store tells apart.
MAX_IDENTITIES: Final = 8


def alternate_key(log: LogFile, attempt: int) -> str:
    """The key of a file that begins like another one read before: derived from its path."""
    path = hashlib.sha256(str(log.path).encode()).hexdigest()[:8]
    return f"{log.identity.key}-{path}-{attempt}"


def resume(
    log: LogFile,
    limits: ReadLimits,
    *,
    key: str,
    start: Position,
    lookup: Callable[[str], Position | None],
) -> tuple[str, Position, Iterator[BlockRead]]:
    """Start reading ``log`` at its checkpoint, under the key its content proves.

    A file that begins like another one read before (same first KiB) shares its content
    key; the bytes before the checkpoint tell them apart, and the newcomer gets a key of its
    own (:func:`alternate_key`), so it is read from its start and never taken for the other.

    Args:
        log: the file.
        limits: read limits.
        key: the key it was found under.
        start: the checkpoint stored under ``key``.
        lookup: the checkpoint stored under another key, if any.

    Returns:
        The key, the position reading starts at, and the blocks.

    Raises:
        InputError: too many different files begin like this one.
    """
    for attempt in range(MAX_IDENTITIES):
        blocks = read_log(log, start, limits, key=key)
        try:
            first = next(blocks, None)
        except IdentityMismatchError:
            key = alternate_key(log, attempt + 1)
            start = lookup(key) or Position()
            continue
        return key, start, itertools.chain([first] if first is not None else [], blocks)
    raise InputError(f"{log.path}: too many different files begin like this one")


def _verify(stream: LogStream, start: Position, path: str) -> Position:
    """Move to ``start`` and check that the bytes before it are those seen before.

    Returns:
        Where reading starts: ``start``, or past a UTF-8 byte order mark at the file start.
    """
    if not start.offset:
        head = stream.read(len(_BOM))
        if head == _BOM:
            return Position(len(_BOM), 1)
        stream.unread(head)
        return start
    if not start.check:
        stream.skip(start.offset)
        return start
    length = int(start.check.split(":", 1)[0])
    stream.skip(start.offset - length)
    if tail_check(stream.read(length)) != start.check:
        raise IdentityMismatchError(f"{path}: not the file read before under this identity")
    return start


def _json_schema(log: LogFile) -> pa.Schema | None:
    if log.format is LogFormat.ZEEK_JSON:
        return json_schema_for(log.log_type)
    if log.format is LogFormat.SURICATA_EVE:
        return EVE_PARSE_SCHEMA
    return None


#: Types imposed on the eve fields every event type shares, so blocks agree on them.
EVE_PARSE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.string()),
        ("flow_id", pa.int64()),
        ("event_type", pa.string()),
        ("src_ip", pa.string()),
        ("src_port", pa.int64()),
        ("dest_ip", pa.string()),
        ("dest_port", pa.int64()),
        ("proto", pa.string()),
        ("community_id", pa.string()),
        ("app_proto", pa.string()),
    ]
)
