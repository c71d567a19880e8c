"""Bounded blocks of whole lines from a (possibly gzip-compressed) log file.

A block is the unit of streaming: it holds about ``block_bytes`` of whole lines and knows
the byte offset and line number of each line; checkpoints are taken between blocks. Offsets
are positions in the decompressed stream, so a live ``conn.log`` read to some offset and
later rotated to ``conn.<time>.log.gz`` resumes at the same place.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Protocol

import numpy as np
import numpy.typing as npt

GZIP_MAGIC: Final = b"\x1f\x8b"
_NEWLINE: Final = 10
_READ_SIZE: Final = 1 << 20
_KEEP_OF_OVERSIZED: Final = 4096
_GZIP_WBITS: Final = 31  # zlib: expect a gzip header and trailer


class TruncatedInputError(Exception):
    """The file could not be read to its end (truncated or corrupt compression)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"unreadable after byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class LogStream(Protocol):
    """What readers need of an open log: bytes, and the position on disk."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` decompressed bytes; empty at the end."""
        ...

    def disk_position(self) -> int:
        """Bytes of the file on disk consumed so far."""
        ...

    def skip(self, count: int) -> None:
        """Move ``count`` decompressed bytes forward (resuming from a checkpoint)."""
        ...

    def unread(self, data: bytes) -> None:
        """Give back ``data``, the bytes just read, to be read again."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class PlainStream:
    """An uncompressed log file."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        return self._raw.read(size)

    def disk_position(self) -> int:
        """Bytes read so far."""
        return self._raw.tell()

    def skip(self, count: int) -> None:
        """Seek ``count`` bytes forward."""
        self._raw.seek(count, 1)

    def unread(self, data: bytes) -> None:
        """Seek back over ``data``."""
        self._raw.seek(-len(data), 1)

    def close(self) -> None:
        """Close the file."""
        self._raw.close()


class GzipStream:
    """A gzip file (one or more members), decompressed incrementally.

    Unlike :class:`gzip.GzipFile`, a truncated or corrupt file first gives every byte that
    could be decompressed before the damage; only the read after those raises ``EOFError``.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=_GZIP_WBITS)
        self._buffer = bytearray()
        self._done = False
        self._error: str | None = None

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` decompressed bytes; empty at the end.

        Raises:
            EOFError: the data before the damage has been read and the file is truncated
                or corrupt.
        """
        while not self._done and (size < 0 or len(self._buffer) < size):
            self._fill()
        if not self._buffer and self._error is not None:
            raise EOFError(self._error)
        count = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        return out

    def _fill(self) -> None:
        chunk = self._raw.read(_READ_SIZE)
        if not chunk:
            self._done = True
            if not self._inflate.eof:
                self._error = "compressed data ends early (truncated gzip file)"
            return
        try:
            self._buffer += self._inflate.decompress(chunk)
            while self._inflate.eof and self._inflate.unused_data:
                rest = self._inflate.unused_data
                if not rest.strip(b"\x00"):  # zero padding after the last member
                    break
                self._inflate = zlib.decompressobj(wbits=_GZIP_WBITS)  # the next member
                self._buffer += self._inflate.decompress(rest)
        except zlib.error as error:
            self._done = True
            self._error = f"corrupt gzip data ({error})"

    def disk_position(self) -> int:
        """Compressed bytes read so far."""
        return self._raw.tell()

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is left to read."""
        self._buffer[:0] = data

    def skip(self, count: int) -> None:
        """Decompress and drop ``count`` bytes (gzip cannot seek)."""
        remaining = count
        while remaining > 0:
            got = len(self.read(min(remaining, _READ_SIZE)))
            if not got:
                return
            remaining -= got

    def close(self) -> None:
        """Close the file."""
        self._raw.close()


class _Opened:
    def __init__(self, stream: PlainStream | GzipStream) -> None:
        self.stream = stream

    def __enter__(self) -> PlainStream | GzipStream:
        return self.stream

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stream.close()


def open_stream(path: Path) -> _Opened:
    """Open ``path`` for reading (a context manager), decompressing gzip transparently."""
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    return _Opened(GzipStream(raw) if head == GZIP_MAGIC else PlainStream(raw))


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
    stream: LogStream,
    *,
    block_bytes: int,
    max_line_bytes: int,
    start_offset: int = 0,
    start_line: int = 1,
    positioned: bool = False,
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
        positioned: the stream already stands at ``start_offset``.

    Yields:
        Blocks in file order.

    Raises:
        TruncatedInputError: after the last whole line before damaged compressed data.
    """
    offset, line = start_offset, start_line
    if start_offset and not positioned:
        stream.skip(start_offset)
    pending = b""
    while True:
        try:
            chunk = stream.read(block_bytes)
        except (EOFError, OSError) as error:
            if pending:  # the whole lines read before the damage are kept
                cut = pending.rfind(b"\n") + 1
                if cut:
                    block = _block(pending[:cut], line, offset)
                    offset = block.end_offset
                    yield block
            raise TruncatedInputError(offset, str(error) or type(error).__name__) from error
        data = pending + chunk if pending else chunk
        if not chunk:
            if data:
                yield _block(data, line, offset)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > max_line_bytes:
                block, pending = _oversized(stream, data, line, offset)
                offset, line = block.end_offset, block.next_line
                yield block
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


def _oversized(
    stream: LogStream, data: bytes, first_line: int, base_offset: int
) -> tuple[Block, bytes]:
    """Consume the rest of an over-long line, keeping its first bytes as evidence.

    Returns:
        The block standing for the line, and the bytes read after it.
    """
    kept = data[:_KEEP_OF_OVERSIZED]
    consumed = len(data)
    rest = b""
    while True:
        chunk = stream.read(_READ_SIZE)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            consumed += newline + 1
            rest = chunk[newline + 1 :]
            break
        consumed += len(chunk)
    starts = np.zeros(1, dtype=np.int64)
    ends = np.array([len(kept)], dtype=np.int64)
    block = Block(kept, starts, ends, first_line, base_offset, consumed=consumed, oversized=True)
    return block, rest
