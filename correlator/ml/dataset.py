"""Labelled flows for training and evaluation, read from real labelled Zeek ``conn`` logs.

A *capture* is one labelled conn log (Zeek TSV with ``label``/``detailedlabel`` columns, as
Stratosphere publishes them, or IoT-23's CSV with ``label``/``detailed-label``). Features
are computed over every flow of a capture, labelled or not, because the detector sees all
of a site's flows; only rows with a usable label become training rows.

The sensor's ``dns`` and ``ssl`` logs in the same folder as a conn log (``dns.log``,
``ssl.log.labeled`` …) are read with it, for the DNS and TLS context features; a capture
without them gets NaN there (no visibility), never "no lookup" or "no TLS".

Labels follow Stratosphere's convention (``LABELS``): ``Malicious`` is 1, ``Benign`` is 0,
and ``Background`` and ``Unknown`` mean *not known*, not benign: those rows are left out.
The malware family of a malicious flow comes from its detailed label where that names one,
else from the capture (``FAMILIES``, taken from the datasets' READMEs).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.errors import InputError
from correlator.ml.dns_tls import DNS_STREAM, SSL_STREAM
from correlator.ml.features import extract
from correlator.schema.unify import unify
from correlator.sources.files import LogFile, discover, recognise
from correlator.testing import load_events

#: Label text (lower case) → class; ``None`` means unknown and the row is not used.
LABELS: Final[dict[str, int | None]] = {
    "malicious": 1,
    "benign": 0,
    "background": None,
    "unknown": None,
}
#: Columns that hold the label and detailed label, as the two publishers name them.
LABEL_COLUMNS: Final = ("zeek.connection.label",)
DETAIL_COLUMNS: Final = ("zeek.connection.detailedlabel", "zeek.connection.detailed-label")
#: (text found in the capture name or detailed label, family), first match wins. From the
#: READMEs of the shared datasets; a capture not listed gets ``unknown``.
FAMILIES: Final[tuple[tuple[str, str], ...]] = (
    ("RemcosRAT", "RemcosRAT"),
    ("External-Attack", "inbound attacks"),
    ("Torii", "Torii"),
    ("001-zeek-scenario-malicious", "NjRAT"),
    ("Botnet-230", "NjRAT"),
    ("CTU-Malware-Capture-8-1", "Hakai"),
    ("CTU-Malware-Capture-20-1", "Torii"),
    ("CTU-Malware-Capture-44-1", "Mirai"),
)
BENIGN_FAMILY: Final = "benign"


@dataclass(frozen=True, slots=True)
class Capture:
    """One labelled conn log used as a capture.

    Attributes:
        name: ``<data root>/<path under it>``: stable across machines.
        sha256: of the file's bytes.
        flows: every flow in the file.
        rows: flows with a usable label.
        label_counts: raw label text → count, over every flow.
        companions: ``(file name, sha256)`` of the dns and ssl logs read beside it.
    """

    name: str
    sha256: str
    flows: int
    rows: int
    label_counts: dict[str, int]
    companions: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class LabelledFlows:
    """Feature rows with their labels and origin.

    Attributes:
        features: ``(rows, len(FEATURES))`` matrix.
        labels: 1 malicious, 0 benign.
        capture: index into ``captures`` of each row.
        family: malware family of each malicious row, ``benign`` for benign ones.
        uid: Zeek uid of each row.
        captures: the captures read.
        skipped: conn logs passed over, with the reason.
    """

    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    capture: npt.NDArray[np.int64]
    family: npt.NDArray[np.str_]
    uid: npt.NDArray[np.str_]
    captures: list[Capture] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def capture_names(self) -> list[str]:
        """Names of the captures, in index order."""
        return [c.name for c in self.captures]

    def fingerprint(self) -> str:
        """sha256 over the captures (names, file hashes, rows) and the label mapping."""
        material = {
            "captures": [
                [c.name, c.sha256, c.flows, c.rows, [list(p) for p in c.companions]]
                for c in self.captures
            ],
            "labels": LABELS,
            "families": FAMILIES,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def label_counts(self) -> dict[str, int]:
        """Rows per class name."""
        return {"benign": int((self.labels == 0).sum()), "malicious": int(self.labels.sum())}


#: Environment variable naming the shared datasets folder (``…/shared/datasets``).
DATASETS_ENV: Final = "FURUI_DATASETS"


def datasets_root(explicit: str | Path | None = None) -> Path:
    """The folder of the shared labelled datasets, for notebooks and scripts.

    ``explicit`` if given, else ``$FURUI_DATASETS``, else the first ``shared/datasets``
    found in the working directory or one of its parents (the layout of a checkout beside
    ``shared/``), so notebooks never spell a ``../`` path.

    Raises:
        InputError: no such folder.
    """
    chosen = explicit or os.environ.get(DATASETS_ENV)
    if chosen:
        root = Path(chosen)
        if not root.is_dir():
            raise InputError(f"{root}: no datasets folder")
        return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    raise InputError(f"no shared/datasets above {here}; set {DATASETS_ENV}")


def load_labelled(paths: Sequence[Path]) -> LabelledFlows:
    """Read every labelled Zeek conn log under ``paths``.

    Args:
        paths: files or directories (searched recursively; only conn logs are read).

    Returns:
        The labelled rows of all captures, captures in a stable (path) order.

    Raises:
        InputError: a path is missing, or no labelled conn log was found.
    """
    parts: list[_CaptureRows] = []
    skipped: list[tuple[str, str]] = []
    for root in paths:
        for log in conn_logs(root):
            name = _capture_name(root, log.path)
            rows = _read_capture(log.path, name)
            if rows is None:
                skipped.append((name, "no label column"))
            else:
                parts.append(rows)
    if not parts:
        raise InputError(
            f"{', '.join(str(p) for p in paths)}: no labelled Zeek conn log "
            "(a label column such as Stratosphere's label/detailedlabel)"
        )
    parts.sort(key=lambda p: p.capture.name)
    return LabelledFlows(
        features=np.concatenate([p.features for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        capture=np.concatenate(
            [np.full(len(p.labels), i, dtype=np.int64) for i, p in enumerate(parts)]
        ),
        family=np.concatenate([p.family for p in parts]),
        uid=np.concatenate([p.uid for p in parts]),
        captures=[p.capture for p in parts],
        skipped=skipped,
    )


@dataclass(frozen=True, slots=True)
class _CaptureRows:
    capture: Capture
    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    family: npt.NDArray[np.str_]
    uid: npt.NDArray[np.str_]


def load_conn(paths: Sequence[Path]) -> pa.Table:
    """Every ``zeek.connection`` event of the conn logs under ``paths``, in one table.

    Raises:
        InputError: a path is missing or holds no conn log.
    """
    tables = []
    for root in paths:
        for log in conn_logs(root):
            events = load_events(log.path).streams.get("zeek.connection")
            if events is not None:
                tables.append(events)
    if not tables:
        raise InputError(f"{', '.join(str(p) for p in paths)}: no Zeek conn log")
    return unify(tables)


def load_context(paths: Sequence[Path]) -> Companions:
    """The dns and ssl events logged beside every conn log under ``paths``, together."""
    folders = {log.path.resolve().parent: log.path for root in paths for log in conn_logs(root)}
    found = [companions_of(path) for _, path in sorted(folders.items())]
    dns = [c.dns for c in found if c.dns is not None]
    ssl = [c.ssl for c in found if c.ssl is not None]
    return Companions(
        dns=unify(dns) if dns else None,
        ssl=unify(ssl) if ssl else None,
        files=tuple(f for c in found for f in c.files),
    )


def conn_logs(root: Path) -> list[LogFile]:
    """The Zeek conn logs under ``root`` (a file or a folder searched recursively)."""
    return [log for log in discover([root]).logs if log.log_type == "conn"]


def _capture_name(root: Path, path: Path) -> str:
    if root.is_dir():
        return f"{root.resolve().name}/{path.resolve().relative_to(root.resolve()).as_posix()}"
    return f"{path.resolve().parent.name}/{path.name}"


#: Zeek log types read beside a conn log, and the stream each becomes.
COMPANION_LOGS: Final = {"dns": DNS_STREAM, "ssl": SSL_STREAM}


@dataclass(frozen=True, slots=True)
class Companions:
    """The dns and ssl events logged beside a conn log (``None``: no such log).

    Attributes:
        dns: ``zeek.dns`` events.
        ssl: ``zeek.ssl`` events.
        files: ``(file name, sha256)`` of each log read.
    """

    dns: pa.Table | None
    ssl: pa.Table | None
    files: tuple[tuple[str, str], ...]


def companions_of(conn_log: Path) -> Companions:
    """The ``dns`` and ``ssl`` logs in the same folder as ``conn_log`` (not below it).

    Several logs of one type (rotated files) are read together.
    """
    found: dict[str, list[pa.Table]] = {stream: [] for stream in COMPANION_LOGS.values()}
    files: list[tuple[str, str]] = []
    for path in sorted(conn_log.resolve().parent.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        log = recognise(path)
        stream = COMPANION_LOGS.get(log.log_type) if isinstance(log, LogFile) else None
        if stream is None:
            continue
        events = load_events(log.path).streams.get(stream)
        files.append((log.path.name, hashlib.sha256(log.path.read_bytes()).hexdigest()))
        if events is not None:
            found[stream].append(events)
    dns, ssl = (unify(found[s]) if found[s] else None for s in (DNS_STREAM, SSL_STREAM))
    return Companions(dns=dns, ssl=ssl, files=tuple(sorted(files)))


def _read_capture(path: Path, name: str) -> _CaptureRows | None:
    loaded = load_events(path)
    events = loaded.streams.get("zeek.connection")
    if events is None:
        return None
    label_column = _first(events, LABEL_COLUMNS)
    if label_column is None:
        return None
    raw = pc.utf8_lower(pc.utf8_trim_whitespace(label_column))
    labels = map_labels(raw)
    keep = labels >= 0
    detail = _first(events, DETAIL_COLUMNS)
    families = families_of(name, detail if detail is not None else pa.nulls(len(raw), pa.string()))
    families = np.where(labels == 1, families, BENIGN_FAMILY)
    counts = Counter(str(v) for v in label_column.to_pylist())
    uid = pc.cast(events.column("zeek.session_id"), pa.string()).fill_null("")
    beside = companions_of(path)
    capture = Capture(
        name=name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        flows=events.num_rows,
        rows=int(keep.sum()),
        label_counts=dict(sorted(counts.items())),
        companions=beside.files,
    )
    return _CaptureRows(
        capture=capture,
        features=extract(events, dns=beside.dns, ssl=beside.ssl)[keep],
        labels=labels[keep],
        family=families[keep],
        uid=np.asarray(uid.to_numpy(zero_copy_only=False), dtype=str)[keep],
    )


def map_labels(lowered: pa.Array) -> npt.NDArray[np.int64]:
    """Class per label (lower case): 1, 0, or -1 for unknown (``Background``, unset …)."""
    labels = np.full(len(lowered), -1, dtype=np.int64)
    for text, value in LABELS.items():
        if value is None:
            continue
        # IoT-23's original files pad labels ("Malicious   C&C"): match the first word
        hit = pc.starts_with(lowered, text).fill_null(False)
        labels[np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)] = value
    return labels


def families_of(capture: str, detail: pa.Array) -> npt.NDArray[np.str_]:
    """Family of each flow from its detailed label, else from the capture's name."""
    out = np.full(len(detail), "unknown", dtype=object)
    decided = np.zeros(len(detail), dtype=bool)
    for text, family in FAMILIES:
        if text in capture:
            out[~decided] = family
            decided[:] = True
            break
        hit = pc.match_substring(detail, text).fill_null(False)
        mask = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool) & ~decided
        out[mask] = family
        decided |= mask
    return out.astype(str)


def _first(events: pa.Table, names: tuple[str, ...]) -> pa.Array | None:
    for name in names:
        if name in events.column_names:
            return pc.cast(events.column(name).combine_chunks(), pa.string())
    return None
