"""Orchestration of one analysis run: files → events → findings → incidents.

Only wiring lives here; every stage is injected or built from settings, so tests and the
Elasticsearch mode run the same steps with other sources and sinks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from correlator.commit import Commit
from correlator.correlate import CorrelationParams, correlate
from correlator.engine.base import Detector, empty_findings
from correlator.engine.signals import SuricataAlerts, ZeekNotices, load_weights
from correlator.ml.detector import build_ml_detectors, ml_provenance
from correlator.normalise import NormaliseContext, normalise
from correlator.normalise.addresses import Networks
from correlator.schema.unify import unify
from correlator.settings import Settings
from correlator.sources.base import Reject
from correlator.sources.files import LogFile, Skipped, discover
from correlator.sources.reader import BlockRead, Position, ReadLimits, resume
from correlator.state import FileState, Store

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives progress while files are read."""

    def start(self, total_bytes: int, files: int) -> None:
        """Reading of ``files`` files, ``total_bytes`` on disk, begins."""

    def file(self, path: Path) -> None:
        """Reading of ``path`` begins."""

    def advance(self, disk_bytes: int) -> None:
        """``disk_bytes`` more bytes on disk were read."""

    def stop(self) -> None:
        """Reading is over."""


class NoProgress:
    """A progress receiver that shows nothing."""

    def start(self, total_bytes: int, files: int) -> None:
        """Ignore."""

    def file(self, path: Path) -> None:
        """Ignore."""

    def advance(self, disk_bytes: int) -> None:
        """Ignore."""

    def stop(self) -> None:
        """Ignore."""


@dataclass(slots=True)
class FileReport:
    """What happened to one file in a run."""

    path: str
    format: str
    log_type: str
    status: str  # read | resumed | unchanged | error
    events: int = 0
    rejects: int = 0
    skipped: int = 0
    error: str | None = None


@dataclass(slots=True)
class RunReport:
    """The outcome of a run, for the command line and for tests."""

    run_id: str
    files: list[FileReport] = field(default_factory=list)
    passed_over: list[Skipped] = field(default_factory=list)
    events: int = 0
    rejects: int = 0
    findings: int = 0
    seconds: float = 0.0
    incidents: pa.Table = field(default_factory=lambda: pa.table({}))
    quarantine: list[dict[str, object]] = field(default_factory=list)
    rejects_by_file: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def build_detectors(settings: Settings) -> list[Detector]:
    """The detectors a run uses, configured from settings."""
    from correlator.engine.detector import build_rule_engine, site_allowlist  # noqa: PLC0415

    weights = load_weights()
    networks = Networks.of(list(settings.network.internal))
    factor = settings.correlation.inbound_factor
    allowlist = site_allowlist(settings)
    return [
        SuricataAlerts(weights.suricata, networks, factor, allowlist),
        ZeekNotices(weights.zeek_notice, networks, factor, allowlist),
        build_rule_engine(settings, networks, allowlist),
        *build_ml_detectors(settings, networks, factor),
    ]


def analyze(
    paths: Sequence[Path],
    settings: Settings,
    store: Store,
    *,
    progress: Progress | None = None,
    detectors: Sequence[Detector] | None = None,
    command: str = "analyze",
) -> RunReport:
    """Run the whole pipeline over log files with the embedded store.

    Files already read are resumed from their checkpoint (or skipped when unchanged), so
    analysing the same files again adds nothing.

    Args:
        paths: files and directories to read.
        settings: the run's settings.
        store: the embedded store.
        progress: receives reading progress.
        detectors: overrides the detectors built from settings (tests).
        command: recorded with the run.

    Returns:
        The run's report, incidents included.

    Raises:
        InputError: a path given does not exist or is not a readable log.
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    found = discover(list(paths))
    report = RunReport(run_id=uuid.uuid4().hex, passed_over=found.skipped)
    store.start_run(report.run_id, command)
    context = NormaliseContext(
        internal=Networks.of(list(settings.network.internal)),
        trust_zeek_local=settings.network.trust_zeek_local,
        community_id_seed=settings.network.community_id_seed,
    )
    active = list(detectors) if detectors is not None else build_detectors(settings)
    limits = ReadLimits(settings.ingest.block_bytes, settings.ingest.max_line_bytes)
    flush_rows = settings.ingest.flush_rows
    progress.start(sum(_disk_size(log.path) for log in found.logs), len(found.logs))
    for detector in active:
        detector.restore(store.detector_state(detector.ruleset))
    run = _Run(store, context, active, limits, report, progress, flush_rows)
    try:
        for log in found.logs:
            progress.file(log.path)
            report.files.append(_read_file(log, run))
        for detector in active:
            run.pending.add_findings(detector.finish())
        _flush(run)
    finally:
        progress.stop()
    findings = store.findings()
    report.findings = findings.num_rows
    params = CorrelationParams(
        window_seconds=settings.correlation.window_seconds,
        max_references=settings.correlation.max_references,
        model=ml_provenance(settings),
    )
    store.upsert_incidents(correlate(findings, params))
    report.incidents = store.incidents()
    report.quarantine = store.quarantined(report.run_id).to_pylist()
    report.seconds = time.perf_counter() - started
    return report


@dataclass(slots=True)
class _Run:
    """What every file of one run is read with, and the commit being buffered."""

    store: Store
    context: NormaliseContext
    detectors: Sequence[Detector]
    limits: ReadLimits
    report: RunReport
    progress: Progress
    flush_rows: int
    pending: Commit = field(default_factory=Commit)


def _read_file(log: LogFile, run: _Run) -> FileReport:
    if log.identity.key in run.pending.files:
        _flush(run)  # the same content listed twice: its checkpoint must be seen first
    size, mtime = _disk_size(log.path), _disk_mtime(log.path)
    state = run.store.file_state(log)
    file_report = FileReport(str(log.path), log.format.value, log.log_type, "read")
    if (
        state is not None
        and state.complete
        and (state.disk_size, state.disk_mtime) == (size, mtime)
    ):
        file_report.status = "unchanged"
        run.progress.advance(size)
        return file_report
    key, start, blocks = _open_at_checkpoint(log, run, state)
    if start.offset:
        file_report.status = "resumed"
        logger.info("%s: resuming at line %d", log.path, start.line)
    error = None
    done = 0
    position = start
    for block in blocks:
        if block.error is not None:
            error = block.error
            logger.warning("%s: %s", log.path, block.error)
            break
        events, findings, rejects = _process(block, run.context, run.detectors)
        run.pending.add(
            key=key,
            log=log,
            position=block.position,
            events=events,
            findings=findings,
            rejects=rejects,
            skipped=block.skipped,
        )
        position = block.position
        rows = sum(t.num_rows for t in events.values())
        file_report.events += rows
        file_report.rejects += len(rejects)
        file_report.skipped += block.skipped
        run.report.events += rows
        run.report.rejects += len(rejects)
        if run.pending.rows >= run.flush_rows:
            _flush(run)
        advance = min(block.disk_offset, size) - done
        done += advance
        run.progress.advance(advance)
    run.pending.finish_file(key, log, position, size=size, mtime=mtime, error=error)
    run.progress.advance(size - done)
    file_report.error = error
    if error is not None:
        file_report.status = "error"
    return file_report


def _open_at_checkpoint(
    log: LogFile, run: _Run, state: FileState | None
) -> tuple[str, Position, Iterator[BlockRead]]:
    """Start reading ``log`` at its checkpoint (see :func:`sources.reader.resume`)."""

    def lookup(key: str) -> Position | None:
        found = run.store.file_state(log, key=key)
        return found.position if found is not None else None

    return resume(
        log,
        run.limits,
        key=state.key if state is not None else log.identity.key,
        start=state.position if state is not None else Position(),
        lookup=lookup,
    )


def _flush(run: _Run) -> None:
    """Store the buffered blocks, their files' checkpoints and the detectors' state at once."""
    run.pending.detector_states = {d.ruleset: d.snapshot() for d in run.detectors}
    if not (run.pending.files or run.pending.findings):
        return
    run.store.commit(run.pending, run_id=run.report.run_id)
    for progress in run.pending.files.values():
        logger.debug("%s: committed up to line %d", progress.log.path, progress.position.line - 1)
    run.pending = Commit()


def _process(
    block: BlockRead, context: NormaliseContext, detectors: Sequence[Detector]
) -> tuple[dict[str, pa.Table], pa.Table, list[Reject]]:
    """Normalise one block and run the detectors over it (pure: no store access)."""
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    rejects: list[Reject] = list(block.rejects)
    for raw in block.batches:
        for result in normalise(raw, context):
            rejects.extend(result.rejects)
            if result.events.num_rows:
                parts[result.stream].append(result.events)
    events = {stream: unify(tables) for stream, tables in parts.items()}
    found = [
        detector.observe(stream, table)
        for stream, table in events.items()
        for detector in detectors
        if stream in detector.streams
    ]
    findings = pa.concat_tables(found) if found else empty_findings()
    return events, findings, rejects


def _disk_size(path: Path) -> int:
    return path.stat().st_size


def _disk_mtime(path: Path) -> float:
    return path.stat().st_mtime
