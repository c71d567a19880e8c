"""``furui ship``: bulk-load Zeek and Suricata logs into Elasticsearch.

Documents are Furui's events in the Elastic Agent ECS layout (the field names of
``elastic-ecs-samples``), one index per dataset (``furui-events-zeek.dns``), with Furui's
own ``furui.*`` fields beside them. Ids are the events' deterministic ids, so shipping a
file again overwrites instead of duplicating; each file's progress is checkpointed in the
state index, so an interrupted ship resumes where it stopped. A document Elasticsearch
refuses is reported with its file and line and kept aside, never dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.es.state import StateIndex
from correlator.normalise import NormaliseContext, normalise
from correlator.normalise.addresses import parse
from correlator.pipeline import NoProgress, Progress
from correlator.schema.unify import unify
from correlator.sinks.elasticsearch import ElasticsearchSink
from correlator.sources.base import Reject
from correlator.sources.files import discover
from correlator.sources.reader import Position, ReadLimits, resume

logger = logging.getLogger(__name__)

SLICE_KEY: Final = "furui.slice_key"
_SOURCE_SIDE: Final = ("outbound", "internal")


@dataclass(slots=True)
class ShipReport:
    """What a ship run did."""

    files: int = 0
    events: int = 0
    written: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason)
    rejects: list[Reject] = field(default_factory=list)
    indices: set[str] = field(default_factory=set)
    seconds: float = 0.0


def slice_keys(events: pa.Table) -> pa.Array:
    """A number per event identifying its internal host, so slices keep hosts whole."""
    direction = pc.cast(events.column("network.direction"), pa.string())
    source_side = pc.is_in(direction, pa.array(_SOURCE_SIDE)).fill_null(True)
    host = pc.if_else(source_side, events.column("source.ip"), events.column("destination.ip"))
    addresses = parse(pc.cast(host, pa.string()))
    hi, lo = addresses.v6_halves()
    v4 = addresses.v4_int().astype(np.uint64)
    key = np.where(addresses.v6, hi ^ lo, v4) % np.uint64(2**31)
    return pa.array(np.where(addresses.ok, key, 0).astype(np.int64))


def ship(
    paths: list[Path],
    *,
    sink: ElasticsearchSink,
    states: StateIndex,
    context: NormaliseContext,
    limits: ReadLimits,
    prefix: str,
    flush_rows: int,
    progress: Progress | None = None,
) -> ShipReport:
    """Read, normalise and index every log under ``paths``.

    Raises:
        InputError: a path does not exist or is not a log.
        ServiceError: Elasticsearch stayed unreachable through the retries.
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    found = discover(paths)
    report = ShipReport(files=len(found.logs))
    progress.start(sum(log.path.stat().st_size for log in found.logs), len(found.logs))
    try:
        for log in found.logs:
            progress.file(log.path)
            key, _, blocks = resume(
                log,
                limits,
                key=log.identity.key,
                start=_saved(states, log.identity.key) or Position(),
                lookup=lambda other: _saved(states, other),
            )
            pending: dict[str, list[pa.Table]] = defaultdict(list)
            rows = 0
            done = 0
            last: Position | None = None
            for block in blocks:
                last = block.position
                report.rejects.extend(block.rejects)
                for raw in block.batches:
                    for result in normalise(raw, context):
                        report.rejects.extend(result.rejects)
                        if result.events.num_rows:
                            pending[result.dataset].append(result.events)
                            rows += result.events.num_rows
                if rows >= flush_rows:
                    _send(pending, sink, prefix, report, log.path)
                    states.put(f"ship:{key}", _position(block.position, log.path))
                    pending, rows = defaultdict(list), 0
                advance = min(block.disk_offset, log.path.stat().st_size) - done
                done += advance
                progress.advance(advance)
            _send(pending, sink, prefix, report, log.path)
            if last is not None:
                states.put(f"ship:{key}", _position(last, log.path))
            progress.advance(log.path.stat().st_size - done)
    finally:
        progress.stop()
    if report.indices:
        sink.refresh(",".join(sorted(report.indices)))  # searchable when ship returns
    report.seconds = time.perf_counter() - started
    return report


def _saved(states: StateIndex, key: str) -> Position | None:
    saved = states.get(f"ship:{key}")
    if saved is None:
        return None
    return Position(
        int(saved["offset"]),
        int(saved["line"]),
        str(saved.get("state", "")),
        str(saved.get("check", "")),
    )


def _position(position: Position, path: Path) -> dict[str, object]:
    return {
        "kind": "ship",
        "source": str(path),
        "offset": position.offset,
        "line": position.line,
        "state": position.state,
        "check": position.check,
    }


def _send(
    pending: dict[str, list[pa.Table]],
    sink: ElasticsearchSink,
    prefix: str,
    report: ShipReport,
    path: Path,
) -> None:
    for dataset, tables in pending.items():
        events = unify(tables)
        events = events.append_column(SLICE_KEY, slice_keys(events))
        index = f"{prefix}-{dataset}"
        result = sink.write(events, index=index, id_field="event.id")
        report.indices.add(index)
        report.events += events.num_rows
        report.written += result.written
        for doc_id, reason in result.errors:
            line = doc_id.rsplit(":", 1)[-1]
            report.refused.append((f"{path}:{line}", reason))
