"""Find log files under the paths a user gives, and recognise what each one holds.

Formats are recognised from content, not names: a Zeek TSV log starts with ``#separator``,
a Zeek JSON log is one object per line with Zeek fields (``_path``, ``uid``, ``id.orig_h``),
a Suricata ``eve.json`` has ``event_type``. Names only decide the log type of a Zeek JSON
file written without ``_path`` (``conn.log``, ``conn.00:00:00-01:00:00.log.gz``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from correlator.errors import InputError
from correlator.sources.base import LogFormat
from correlator.sources.blocks import open_stream
from correlator.sources.zeek_csv import ZEEK_CSV_FIELDS, csv_fields, csv_log_type

#: Bytes of decompressed content that identify a file (see ``FileIdentity``).
IDENTITY_BYTES: Final = 1024
_SNIFF_BYTES: Final = 65536
_BOM: Final = b"\xef\xbb\xbf"
_ZEEK_JSON_KEYS: Final = frozenset({"_path", "uid", "id.orig_h", "fuid", "ts", "_write_ts"})
#: Log types read after the others of their folder (``_context_first``).
_READ_LAST: Final = frozenset({"conn"})


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Identity of a log file by its first bytes, as Filebeat's ``fingerprint`` does.

    The key survives renaming and compression on rotation (it hashes decompressed bytes).
    A file shorter than ``IDENTITY_BYTES`` is identified by what it holds so far; the store
    recognises it again by path and ``head_len`` once it has grown.
    """

    key: str
    head_len: int
    head: bytes

    def prefix_key(self, length: int) -> str:
        """The key this file had when it was only ``length`` bytes long."""
        return _digest(self.head[:length])


@dataclass(frozen=True, slots=True)
class LogFile:
    """A recognised log file."""

    path: Path
    format: LogFormat
    log_type: str
    identity: FileIdentity


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file found under a directory that is not a log Furui reads, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """What discovery found: logs to read and other files passed over."""

    logs: list[LogFile]
    skipped: list[Skipped]


def discover(paths: list[Path]) -> Discovery:
    """Expand files and directories (recursively) into recognised log files.

    Args:
        paths: files or directories given by the user.

    Returns:
        The logs in a stable order (each folder's conn logs after its other logs), and
        the files passed over with a reason.

    Raises:
        InputError: a path does not exist or cannot be read, or a file named directly is
            not a log Furui reads.
    """
    logs: list[LogFile] = []
    skipped: list[Skipped] = []
    for given in paths:
        if not given.exists():
            raise InputError(f"{given}: no such file or directory")
        if given.is_dir():
            under: list[LogFile] = []
            for candidate in _walk(given):
                found = recognise(candidate)
                if isinstance(found, LogFile):
                    under.append(found)
                else:
                    skipped.append(found)
            logs.extend(_context_first(under))
            continue
        found = recognise(given)
        if isinstance(found, Skipped):
            raise InputError(f"{given}: {found.reason}")
        logs.append(found)
    return Discovery(logs=logs, skipped=skipped)


def recognise(path: Path) -> LogFile | Skipped:
    """Recognise one file's format and log type from its content.

    Raises:
        InputError: the file cannot be opened or read.
    """
    try:
        head = _read_head(path)
    except PermissionError as error:
        raise InputError(f"{path}: permission denied") from error
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from error
    except EOFError as error:
        return Skipped(path, f"unreadable compressed file: {error}")
    body = head.removeprefix(_BOM)
    if not body.strip():
        return Skipped(path, "empty file")
    identity = _identity(head)
    if body.startswith(b"#separator"):
        log_type = _header_value(body, b"#path") or log_type_from_name(path)
        fields = (_header_value(body, b"#fields") or "").split(_separator(body))
        if "ts" not in fields:
            return Skipped(path, f"Zeek {log_type} log without timestamps (no ts field)")
        return LogFile(path, LogFormat.ZEEK_TSV, log_type, identity)
    if body.startswith(b"{"):
        return _recognise_json(path, body, identity)
    columns = csv_fields(body.split(b"\n", 1)[0])
    if set(columns) >= ZEEK_CSV_FIELDS:
        log_type = csv_log_type(columns, log_type_from_name(path))
        return LogFile(path, LogFormat.ZEEK_CSV, log_type, identity)
    if body.startswith(b"["):
        return Skipped(
            path, "a JSON array, not one JSON object per line (convert with jq -c '.[]')"
        )
    return Skipped(path, "not a Zeek TSV/JSON log or a Suricata eve.json")


def log_type_from_name(path: Path) -> str:
    """The Zeek log type a file name suggests: ``conn`` for ``conn.00:00:00-01:00:00.log.gz``."""
    stem = path.name.split(".", 1)[0]
    return stem.rsplit("-", 1)[-1] if "-" in stem else stem


def _recognise_json(path: Path, body: bytes, identity: FileIdentity) -> LogFile | Skipped:
    first = body.split(b"\n", 1)[0]
    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        # the first line is cut by the sniff limit or broken: look at the keys it shows
        if b'"event_type"' in first:
            return LogFile(path, LogFormat.SURICATA_EVE, "eve", identity)
        return Skipped(path, "first line is not valid JSON")
    if not isinstance(record, dict):
        return Skipped(path, "JSON lines that are not objects")
    if "event_type" in record:
        return LogFile(path, LogFormat.SURICATA_EVE, "eve", identity)
    if _ZEEK_JSON_KEYS & record.keys():
        path_field = record.get("_path")
        log_type = path_field if isinstance(path_field, str) else log_type_from_name(path)
        if "ts" not in record:
            return Skipped(path, f"Zeek {log_type} log without timestamps (no ts field)")
        return LogFile(path, LogFormat.ZEEK_JSON, log_type, identity)
    return Skipped(path, "JSON lines without Zeek or Suricata fields")


def _context_first(logs: list[LogFile]) -> list[LogFile]:
    """Each folder's logs with its conn logs after the others; folders in walk order.

    The flow model joins a window's dns and ssl events to its flows and scores the window
    once every stream has moved past it: read after them, flows find their context.
    Reading hour by hour instead (dns.00, ssl.00, conn.00, dns.01 …) would hold less
    context, but commits would then span many tables and cost 65 % more (docs/benchmarks.md).
    """
    folders = {folder: i for i, folder in enumerate(dict.fromkeys(g.path.parent for g in logs))}
    return sorted(logs, key=lambda g: (folders[g.path.parent], g.log_type in _READ_LAST))


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / n for n in sorted(names) if not n.startswith("."))
    return found


def _read_head(path: Path) -> bytes:
    with open_stream(path) as stream:
        return stream.read(_SNIFF_BYTES)


def _identity(head: bytes) -> FileIdentity:
    prefix = head[:IDENTITY_BYTES]
    return FileIdentity(key=_digest(prefix), head_len=len(prefix), head=prefix)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _separator(body: bytes) -> str:
    first = body.split(b"\n", 1)[0]
    declared = first.split(b" ", 1)[1].strip() if b" " in first else b"\\x09"
    return declared.decode("ascii", errors="replace").encode().decode("unicode_escape")


def _header_value(body: bytes, name: bytes) -> str | None:
    """A Zeek TSV header value, split on the separator the header declares."""
    lines = body.split(b"\n", 16)
    prefix = name + _separator(body).encode()
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix) :].rstrip(b"\r").decode("utf-8", errors="replace")
    return None
