"""Bounded blocks of whole lines from a (possibly gzip-compressed) log file.

A block is the unit of streaming: it holds at most ``block_bytes`` of whole lines, knows
the byte offset and line number of each line, and is where checkpoints are taken. Offsets
are positions in the decompressed stream, so a live ``conn.log`` read to some offset and
later rotated to ``conn.<time>.log.gz`` resumes at the same place.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

GZIP_MAGIC: Final = b"\x1f\x8b"
_NEWLINE: Final = 10
_READ_SIZE: Final = 1 << 20
_KEEP_OF_OVERSIZED: Final = 4096


class TruncatedInputError(Exception):
    """The file could not be read to its end (truncated or corrupt compression)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"unreadable after byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def open_stream(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing gzip transparently.

    Args:
        path: the log file.

    Returns:
        A binary stream of the decompressed content.
    """
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def disk_position(stream: BinaryIO) -> int:
    """Bytes of the file on disk consumed so far (compressed bytes for gzip)."""
    raw = getattr(stream, "fileobj", None)
    if raw is not None:
        return int(raw.tell())
    return stream.tell()


def read_head(path: Path, size: int = 4096) -> bytes:
    """Return up to ``size`` decompressed bytes from the start of ``path``."""
    with open_stream(path) as stream:
        return stream.read(size)


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of a file, with the position of each line.

    Attributes:
        data: the bytes of the lines, each line's newline included (the last may lack one).
        starts: byte offset of each line within ``data``.
        ends: byte offset just past each line's content (newline and CR excluded).
        first_line: 1-based line number of the first line in the file.
        base_offset: offset of ``data[0]`` in the decompressed file.
        consumed: bytes of the file this block stands for; larger than ``len(data)`` only
            for an oversized line, of which ``data`` keeps the first bytes.
        oversized: the block is one line longer than the reader's line limit.
    """

    data: bytes
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    first_line: int
    base_offset: int
    consumed: int
    oversized: bool = False

    @property
    def end_offset(self) -> int:
        """Offset in the file just past this block: the resume point after it."""
        return self.base_offset + self.consumed

    @property
    def next_line(self) -> int:
        """Line number of the first line after this block."""
        return self.first_line + len(self.starts)

    def line(self, index: int) -> bytes:
        """The content of line ``index`` (0-based within the block), without newline."""
        return self.data[int(self.starts[index]) : int(self.ends[index])]


def index_lines(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    r"""Find the start and content end of every line in ``data``, vectorised.

    Args:
        data: whole lines; the final line may lack its newline.

    Returns:
        The start offsets and the content end offsets (before ``\r\n`` or ``\n``).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE).astype(np.int64)
    if len(data) and (not len(newlines) or newlines[-1] != len(data) - 1):
        newlines = np.append(newlines, np.int64(len(data)))
    starts = np.empty(len(newlines), dtype=np.int64)
    if len(newlines):
        starts[0] = 0
        starts[1:] = newlines[:-1] + 1
    ends = newlines.copy()
    if len(ends):
        # strip a CR before the newline (files written on Windows)
        prev = np.clip(ends - 1, 0, None)
        has_cr = (ends > starts) & (buf[prev] == ord("\r"))
        ends[has_cr] -= 1
    return starts, ends


def iter_blocks(
    stream: BinaryIO,
    *,
    block_bytes: int,
    max_line_bytes: int,
    start_offset: int = 0,
    start_line: int = 1,
) -> Iterator[Block]:
    """Yield blocks of whole lines of about ``block_bytes`` each, in file order.

    No line is ever split. A line longer than ``block_bytes`` comes alone in its block; a
    line longer than ``max_line_bytes`` (binary garbage, a runaway writer) is not held in
    memory: its block keeps only the first bytes and is flagged ``oversized``.

    Args:
        stream: the decompressed file content.
        block_bytes: target block size.
        max_line_bytes: longest line accepted.
        start_offset: skip this many bytes first (resume from a checkpoint).
        start_line: line number of the first line after ``start_offset``.

    Yields:
        Blocks in file order.
    """
    _skip(stream, start_offset)
    offset, line = start_offset, start_line
    pending = b""
    while True:
        try:
            chunk = stream.read(block_bytes)
        except (EOFError, OSError, zlib.error) as error:
            # a truncated or corrupt gzip member: keep every whole line read so far
            if pending:
                yield _block(pending, line, offset)
                offset += len(pending)
            raise TruncatedInputError(offset, str(error) or type(error).__name__) from error
        data = pending + chunk if pending else chunk
        if not chunk:
            if data:
                yield _block(data, line, offset)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > max_line_bytes:
                block = _oversized(stream, data, line, offset)
                offset, line = block.end_offset, block.next_line
                yield block
                pending = b""
            else:
                pending = data  # a line longer than a block: read on until it ends
            continue
        if len(data) < block_bytes and cut == len(data):
            pending = data  # room for more whole lines
            continue
        block = _block(data[:cut], line, offset)
        pending = data[cut:]
        offset, line = block.end_offset, block.next_line
        yield block


def _block(data: bytes, first_line: int, base_offset: int) -> Block:
    starts, ends = index_lines(data)
    return Block(data, starts, ends, first_line, base_offset, consumed=len(data))


def _oversized(stream: BinaryIO, data: bytes, first_line: int, base_offset: int) -> Block:
    """Consume the rest of an over-long line, keeping its first bytes as evidence."""
    kept = data[:_KEEP_OF_OVERSIZED]
    consumed = len(data)
    while True:
        chunk = stream.read(_READ_SIZE)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            consumed += newline + 1
            # what follows the newline belongs to later lines: give it back
            _unread(stream, chunk[newline + 1 :])
            break
        consumed += len(chunk)
    starts = np.zeros(1, dtype=np.int64)
    ends = np.array([len(kept)], dtype=np.int64)
    return Block(kept, starts, ends, first_line, base_offset, consumed=consumed, oversized=True)


def _unread(stream: BinaryIO, rest: bytes) -> None:
    if rest:
        stream.seek(-len(rest), io.SEEK_CUR)


def _skip(stream: BinaryIO, count: int) -> None:
    if count <= 0:
        return
    if isinstance(stream, io.BufferedReader | io.FileIO):
        stream.seek(count)
        return
    remaining = count
    while remaining:
        got = len(stream.read(min(remaining, _READ_SIZE)))
        if not got:
            return
        remaining -= got
