"""Durations, half-open time windows and group keys shared by the rule kinds.

Windows are tumbling and aligned to the Unix epoch, ``[k * width, (k + 1) * width)``, as the
incident windows are: a window's start depends only on an event's time, never on the order
or the batches in which events arrive, so every kind gives the same groups whatever the
block size or file order.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BeforeValidator, PlainSerializer

MICROS: Final = 1_000_000
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
#: Separates the parts of a group key; cannot occur in the text of a log field value that
#: Zeek or Suricata write (both escape control characters).
KEY_SEPARATOR: Final = "\x1f"
#: Stands for a missing value inside a group key.
NULL_KEY: Final = "\x00"


def parse_duration(value: object) -> int:
    """Seconds of a duration written ``30s``, ``10m``, ``2h`` or ``1d`` (or a number of s).

    Raises:
        ValueError: the value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration such as '10m'")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as '30s', '10m', '2h' or '1d'")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """Human text for a number of seconds: ``30.1 s``, ``4.0 min``, ``2.5 h``."""
    if seconds < 120:  # noqa: PLR2004 - below two minutes, seconds read best
        return f"{seconds:.1f} s"
    if seconds < 7200:  # noqa: PLR2004
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _serialise(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


#: A duration field of a params model: ``"10m"`` in TOML, seconds in Python.
Duration = Annotated[int, BeforeValidator(parse_duration), PlainSerializer(_serialise)]


def micros(timestamps: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch of a timestamp column (nulls become 0)."""
    if isinstance(timestamps, pa.ChunkedArray):
        timestamps = timestamps.combine_chunks()
    ints = pc.cast(timestamps, pa.int64()).fill_null(0)
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def window_start(ts_us: npt.NDArray[np.int64], width_seconds: int) -> npt.NDArray[np.int64]:
    """Start (µs) of the epoch-aligned window of each timestamp."""
    width = np.int64(width_seconds * MICROS)
    return (ts_us // width) * width


def join_key(parts: list[pa.Array]) -> pa.Array:
    """One text key per row from several columns (nulls kept distinct from empty text)."""
    if not parts:
        raise ValueError("a key needs at least one part")
    texts = [
        pc.fill_null(pc.cast(p, pa.string()) if not pa.types.is_string(p.type) else p, NULL_KEY)
        for p in parts
    ]
    if len(texts) == 1:
        return texts[0]
    return pc.binary_join_element_wise(*texts, KEY_SEPARATOR)


def group_starts(keys: pa.Array) -> npt.NDArray[np.bool_]:
    """For a sorted key column, true where a new group begins."""
    n = len(keys)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        differs = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).fill_null(True)
        starts[1:] = np.asarray(differs.to_numpy(zero_copy_only=False), dtype=bool)
    return starts


def rank_in_group(starts: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """0-based position of each row within its group (rows sorted by group)."""
    n = len(starts)
    index = np.arange(n, dtype=np.int64)
    first = np.maximum.accumulate(np.where(starts, index, 0))
    return index - first
