"""Line-level screening of a block before a columnar parser sees it.

The parsers (Arrow's CSV and JSON readers) are fast but all-or-nothing; this module removes
the lines they must not see (headers, blank lines, bytes that are not UTF-8) and keeps the
file position of every line that remains, so each parsed row and each rejected line can be
named by file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from correlator.errors import Location
from correlator.sources.base import Reject
from correlator.sources.blocks import Block

_TEXT_KEPT: Final = 4096


@dataclass(frozen=True, slots=True)
class Selection:
    """Some lines of a block, concatenated for a parser, with their positions.

    Attributes:
        data: the selected lines, newline-terminated.
        lines: 1-based file line number of each selected line.
        offsets: byte offset in the file of each selected line.
    """

    data: bytes
    lines: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]

    def raw_lines(self) -> pa.Array:
        """Each selected line as bytes (newline included), a zero-copy view of ``data``."""
        stops = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == ord("\n")) + 1
        bounds = np.concatenate(([0], stops)).astype(np.int32)
        return pa.BinaryArray.from_buffers(
            pa.binary(), len(stops), [None, pa.py_buffer(bounds), pa.py_buffer(self.data)]
        )


def first_bytes(block: Block) -> npt.NDArray[np.uint8]:
    """The first byte of every line (0 for an empty line), vectorised."""
    buf = np.frombuffer(block.data, dtype=np.uint8)
    out = np.zeros(len(block.starts), dtype=np.uint8)
    nonempty = block.ends > block.starts
    out[nonempty] = buf[block.starts[nonempty]]
    return out


def invalid_utf8(block: Block) -> npt.NDArray[np.bool_]:
    """Mark the lines that are not valid UTF-8 (binary garbage).

    Decoding runs at C speed over the whole block; only a failing block is walked line by
    line from the first bad byte on.
    """
    bad = np.zeros(len(block.starts), dtype=bool)
    view = memoryview(block.data)
    position = 0
    while position < len(block.data):
        try:
            str(view[position:], "utf-8")
        except UnicodeDecodeError as error:
            at = position + error.start
            line = int(np.searchsorted(block.starts, at, side="right")) - 1
            bad[line] = True
            position = (
                int(block.starts[line + 1]) if line + 1 < len(block.starts) else len(block.data)
            )
            continue
        break
    return bad


def select(block: Block, keep: npt.NDArray[np.bool_]) -> Selection:
    """Concatenate the kept lines of a block, vectorised (no per-line Python work)."""
    index = np.flatnonzero(keep)
    lines = block.first_line + index.astype(np.int64)
    offsets = block.base_offset + block.starts[index]
    if len(index) == len(block.starts):
        data = block.data
    elif not len(index):
        data = b""
    elif index[-1] - index[0] + 1 == len(index):
        stop = block.starts[index[-1] + 1] if index[-1] + 1 < len(block.starts) else len(block.data)
        data = block.data[int(block.starts[index[0]]) : int(stop)]
    else:
        buf = np.frombuffer(block.data, dtype=np.uint8)
        line_stop = np.append(block.starts[1:], len(block.data))
        byte_keep = np.repeat(keep, line_stop - block.starts)
        data = buf[byte_keep].tobytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return Selection(data=data, lines=lines, offsets=offsets)


def reject(block: Block, index: int, path: str, reason: str) -> Reject:
    """A reject for line ``index`` (0-based within the block)."""
    text = block.line(index)[:_TEXT_KEPT]
    return Reject(
        location=Location(path, block.first_line + index),
        offset=block.base_offset + int(block.starts[index]),
        reason=reason,
        text=text,
    )


def reject_at(selection: Selection, row: int, path: str, reason: str, text: bytes) -> Reject:
    """A reject for row ``row`` of a selection."""
    return Reject(
        location=Location(path, int(selection.lines[row])),
        offset=int(selection.offsets[row]),
        reason=reason,
        text=text[:_TEXT_KEPT],
    )


def screen(
    block: Block, path: str, max_line_bytes: int
) -> tuple[npt.NDArray[np.bool_], list[Reject]]:
    """Mark the lines a parser may see, and reject binary and over-long lines.

    Returns:
        A mask of usable lines (non-empty, valid UTF-8, within the length limit) and the
        rejects for the others (empty lines are skipped silently).
    """
    rejects: list[Reject] = []
    if block.oversized:
        reason = f"line longer than {max_line_bytes} bytes"
        return np.zeros(1, dtype=bool), [reject(block, 0, path, reason)]
    usable = block.ends > block.starts
    too_long = (block.ends - block.starts) > max_line_bytes
    rejects.extend(
        reject(block, int(index), path, f"line longer than {max_line_bytes} bytes")
        for index in np.flatnonzero(too_long)
    )
    usable &= ~too_long
    binary = invalid_utf8(block)
    rejects.extend(
        reject(block, int(index), path, "not UTF-8 text (binary data)")
        for index in np.flatnonzero(binary)
    )
    return usable & ~binary, rejects
