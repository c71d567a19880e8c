"""Incidents and quarantined records as NDJSON files (one JSON document per line)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from correlator.errors import SinkError

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def nest(record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn flat dotted names into nested objects, as Elasticsearch documents have them."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a leaf and an object share a name: keep both
                child = node[part] = {"value": child}
            node = child
        node[parts[-1]] = value
    return out


def documents(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of a flat ECS table as nested documents."""
    return [nest(row) for row in table.to_pylist()]


def dumps(document: Mapping[str, Any]) -> bytes:
    """One document as a JSON line."""
    return orjson.dumps(document, option=_OPTIONS, default=str) + b"\n"


def write_incidents(incidents: pa.Table, path: Path) -> int:
    """Write incidents to ``path`` (replacing it), one document per line.

    Raises:
        SinkError: the file cannot be written.
    """
    return _write(path, (dumps(doc) for doc in documents(incidents)), mode="wb")


def append_quarantine(records: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Append quarantined records to ``path``: file, line, offset, reason and raw text.

    Text that is not UTF-8 is kept as base64 in ``text_base64``.

    Raises:
        SinkError: the file cannot be written.
    """

    def lines() -> Iterable[bytes]:
        for record in records:
            raw = record.get("text") or b""
            doc: dict[str, Any] = {
                "file": record["path"],
                "line": record["line"],
                "offset": record["offset"],
                "reason": record["reason"],
                "at": record["at"],
            }
            try:
                doc["text"] = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                doc["text_base64"] = base64.b64encode(bytes(raw)).decode("ascii")
            yield dumps(doc)

    return _write(path, lines(), mode="ab")


def _write(path: Path, lines: Iterable[bytes], *, mode: str) -> int:
    count = 0
    try:
        with path.open(mode) as handle:
            for line in lines:
                handle.write(line)
                count += 1
    except OSError as error:
        raise SinkError(f"{path}: cannot write: {error.strerror or error}") from error
    return count
