"""Line numbers of TOML keys, so that a validation error can name ``file:line``.

``tomllib`` keeps no positions. This scanner reads the table headers and ``key =`` lines of
a file and maps each key path to the line it is written on; an error location such as
``("rule", "params", "window")`` is resolved to the deepest key path that has a line.
It understands what rule and allowlist files use (tables, arrays of tables, dotted and
quoted keys, inline values); for anything else it falls back to the enclosing table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

_HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY: Final = re.compile(
    r'^\s*((?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_\-]+))*)\s*='
)
_PART: Final = re.compile(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+)')

Path = tuple[str | int, ...]


def _parts(dotted: str) -> list[str]:
    return [a or b or c for a, b, c in _PART.findall(dotted)]


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path of a TOML document to its (1-based) line."""
    lines: dict[Path, int] = {}
    arrays: dict[Path, int] = {}
    table: Path = ()
    depth = 0  # open brackets of a multi-line value: its lines hold no keys of the table
    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0 and (header := _HEADER.match(line)):
            names = tuple(_parts(header.group(2)))
            if header.group(1) == "[[":
                index = arrays.get(names, -1) + 1
                arrays[names] = index
                table = (*names, index)
            else:
                table = names
            lines.setdefault(table, number)
            continue
        if depth == 0 and (key := _KEY.match(line)):
            lines.setdefault((*table, *_parts(key.group(1))), number)
        depth = max(0, depth + _balance(line))
    return lines


def _balance(line: str) -> int:
    """Open minus closed brackets on a line, outside strings and comments."""
    balance, quote = 0, ""
    for char in line:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            balance += 1
        elif char in "]}":
            balance -= 1
    return balance


def line_of(lines: dict[Path, int], location: Sequence[str | int]) -> int | None:
    """The line of the deepest known key path along ``location``."""
    path = tuple(location)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None
