"""``furui run``: the correlator over Elasticsearch, incrementally, once or following.

Each cycle reads the documents that arrived since the checkpoint (up to now minus the lag,
so late documents are not missed), runs the detectors, stores findings, saves checkpoint
and detector state together, and re-correlates the incidents of every host it touched.
A point in time lost to a server restart is reopened at the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from correlator.correlate import CorrelationParams, correlate
from correlator.engine.base import Detector
from correlator.errors import ServiceError
from correlator.es.state import RunState, StateIndex
from correlator.sinks.elasticsearch import ElasticsearchSink
from correlator.sources.elasticsearch import (
    SLICE_FIELD,
    Checkpoint,
    ElasticsearchSource,
    PointInTimeLostError,
    Slice,
)

logger = logging.getLogger(__name__)

_MS: Final = 1000
#: Times a cycle reopens a point in time lost mid-read (server restarted) before giving up.
_REOPENS: Final = 5


@dataclass(slots=True)
class CycleReport:
    """What one cycle did."""

    documents: int = 0
    findings: int = 0
    incidents: int = 0
    checkpoint: int | None = None
    seconds: float = 0.0

    def lag_seconds(self, now: datetime) -> float | None:
        """How far the checkpoint is behind ``now``."""
        if self.checkpoint is None:
            return None
        return now.timestamp() - self.checkpoint / _MS


@dataclass(frozen=True, slots=True)
class RunTarget:
    """Which input one worker handles, and where its state lives."""

    source: str
    part: Slice
    since: datetime | None = None

    @property
    def key(self) -> str:
        """The state document of this worker."""
        return f"run:{self.source}:{self.part.index}-{self.part.count}"


def run_cycle(
    *,
    source: ElasticsearchSource,
    sink: ElasticsearchSink,
    states: StateIndex,
    detectors: Sequence[Detector],
    target: RunTarget,
    params: CorrelationParams,
    until: datetime,
    slice_field: str | None = SLICE_FIELD,
    checkpoint_seconds: float = 30.0,
) -> CycleReport:
    """Read everything from the checkpoint up to ``until`` once.

    Raises:
        ServiceError: Elasticsearch stayed unreachable through the retries.
    """
    started = time.perf_counter()
    state = states.load(target.key)
    if state.checkpoint.time is None and target.since is not None:
        state.checkpoint = Checkpoint(int(target.since.timestamp() * _MS))
    for detector in detectors:
        detector.restore(state.detectors.get(detector.ruleset, b""))
    report = CycleReport(checkpoint=state.checkpoint.time)
    # hosts whose incidents need recomputing, including those of a cycle that died before
    touched: dict[str, tuple[int, int]] = dict(state.pending)
    until_ms = int(until.timestamp() * _MS)
    saved_at, handled, last = time.monotonic(), 0, state.checkpoint
    for attempt in range(_REOPENS + 1):
        try:
            # ``last``: how far the detectors have seen, saved or not; a point in time lost
            # mid-read is reopened there, so nothing is observed twice
            for page in source.pages(
                start=last, until_ms=until_ms, part=target.part, slice_field=slice_field
            ):
                found = _observe(detectors, page.streams)
                _store(sink, found, touched, report)
                report.documents += page.documents
                report.checkpoint = page.checkpoint.time
                handled += page.documents
                last = page.checkpoint
                if time.monotonic() - saved_at >= checkpoint_seconds:
                    # detector state can be megabytes: saved, with the checkpoint it belongs
                    # to, every few seconds rather than every page; a crash re-reads since
                    state = RunState(
                        last, _snapshots(detectors), state.events + handled, dict(touched)
                    )
                    handled = 0
                    states.save(target.key, state, source=target.source, part=str(target.part))
                    saved_at = time.monotonic()
                    logger.debug("checkpoint %s after %d documents", last.time, report.documents)
            break
        except PointInTimeLostError:
            if attempt == _REOPENS:
                raise
            logger.warning("point in time lost (server restarted?); reopening at the checkpoint")
    _store(sink, pa.concat_tables([d.finish() for d in detectors]), touched, report)
    final = RunState(last, _snapshots(detectors), state.events + handled, dict(touched))
    states.save(target.key, final, source=target.source, part=str(target.part))
    report.incidents = _recorrelate(sink, touched, params)
    final.pending = {}  # correlated: nothing left for a restart to redo
    states.save(target.key, final, source=target.source, part=str(target.part))
    report.seconds = time.perf_counter() - started
    return report


def follow(
    cycle: Callable[[datetime], CycleReport],
    *,
    lag: timedelta,
    poll: timedelta,
    report: Callable[[CycleReport, datetime], None],
    cycles: int | None = None,
) -> None:
    """Run ``cycle`` every ``poll`` until interrupted (or ``cycles`` times)."""
    done = 0
    while cycles is None or done < cycles:
        now = datetime.now(UTC)
        report(cycle(now - lag), now)
        done += 1
        if cycles is None or done < cycles:
            time.sleep(poll.total_seconds())


def _observe(detectors: Sequence[Detector], streams: dict[str, pa.Table]) -> pa.Table:
    found = [
        detector.observe(stream, table)
        for stream, table in streams.items()
        for detector in detectors
        if stream in detector.streams
    ]
    return pa.concat_tables(found) if found else pa.table({})


def _store(
    sink: ElasticsearchSink,
    findings: pa.Table,
    touched: dict[str, tuple[int, int]],
    report: CycleReport,
) -> None:
    if not findings.num_rows:
        return
    result = sink.write_findings(findings)
    if result.errors:
        raise ServiceError(
            f"{len(result.errors)} findings refused, first {result.errors[0][0]}: "
            f"{result.errors[0][1]}"
        )
    report.findings += findings.num_rows
    stamps = pc.cast(findings.column("@timestamp"), pa.int64())
    hosts = findings.column("host.ip")
    for host in pc.unique(hosts).to_pylist():  # per distinct host, not per finding
        mine = stamps.filter(pc.equal(hosts, host))
        low, high = pc.min(mine).as_py(), pc.max(mine).as_py()
        seen = touched.get(host)
        touched[host] = (low, high) if seen is None else (min(seen[0], low), max(seen[1], high))


def _recorrelate(
    sink: ElasticsearchSink, touched: dict[str, tuple[int, int]], params: CorrelationParams
) -> int:
    """Recompute the incidents of every window the cycle added findings to.

    An incident names the incidents of the internal hosts it attacked or was attacked by
    (lateral spread), so the hosts one hop away are rewritten too, and their own neighbours
    read, for every rewritten incident to be the one a full correlation gives.
    """
    if not touched:
        return 0
    sink.refresh(sink.findings_index)
    window = params.window_seconds * 1_000_000
    low = min(t[0] for t in touched.values()) // window * window
    high = (max(t[1] for t in touched.values()) // window + 1) * window
    start = datetime.fromtimestamp(low / 1e6, UTC)
    end = datetime.fromtimestamp(high / 1e6, UTC)
    write, read, frontier = set(touched), set[str](), set(touched)
    tables = []
    for hop in range(2):
        found = sink.findings_for(frontier - read, start, end)
        read |= frontier
        tables.append(found)
        peers = {p for p in found.column("furui.peer_ip").to_pylist() if p} - read
        if hop == 0:
            write |= peers
        frontier = peers
    incidents = correlate(pa.concat_tables(tables), params)
    if incidents.num_rows:
        mine = pc.is_in(incidents.column("host.ip"), pa.array(sorted(write), pa.string()))
        incidents = incidents.filter(mine)
    sink.upsert_incidents(incidents)
    return int(incidents.num_rows)


def _snapshots(detectors: Sequence[Detector]) -> dict[str, bytes]:
    return {d.ruleset: d.snapshot() for d in detectors}
