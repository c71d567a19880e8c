"""Run the embedded pipeline over labelled captures and score its incidents.

The edge of the evaluation: it finds captures on disk, reads label files, runs
``pipeline.analyze`` for each capture in a temporary store, and hands labels and incidents
to the pure code (``labels``, ``metrics``).

A **capture** is a set of logs of one network and time, analysed together in a store of
its own (so addresses of different captures never meet). Under each path given:

* each folder holding logs is one capture (a sensor's log folder: conn, http, ssl …);
* a folder holding several *labelled* conn logs holds one capture per file (IoT-23
  publishes one scenario per CSV);
* an unlabelled log beside a labelled log of the same type is passed over: it is the same
  traffic without labels (``001`` ships ``conn.log`` and ``labeled-conn.log``);
* with label columns, a folder without any labelled log is passed over; with a label
  file, every folder counts.

The model can run as the settings say, be switched off (the rules' own performance), or be
**held out**: each capture is then scored by a model fitted with the shipped recipe
(``ml.train.fit``, the shipped bundle's threshold) on the labelled conn logs of the *other*
captures given, as ``docs/model.md``'s leave-one-capture-out evaluation does for flows. The
shipped model was trained on the shared labelled captures, so on them only the held-out
figures say what to expect on a network it has not seen.
"""

from __future__ import annotations

import csv
import enum
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.base import Detector
from correlator.engine.detector import build_rule_engine, site_allowlist
from correlator.engine.loader import load_rules, packaged_rules
from correlator.errors import InputError
from correlator.evaluation.labels import (
    ATTACK_PATTERN,
    HostClass,
    LabelColumns,
    Truth,
    host_class,
    labelled_events,
    truth_of,
    with_host_labels,
)
from correlator.evaluation.metrics import CaptureResult, incident_views, score_capture
from correlator.ml.detector import ml_provenance
from correlator.normalise import NormaliseContext
from correlator.normalise.addresses import Networks
from correlator.pipeline import analyze
from correlator.schema.unify import unify
from correlator.settings import Settings
from correlator.sources.base import LogFormat
from correlator.sources.blocks import open_stream
from correlator.sources.files import LogFile, discover
from correlator.sources.zeek_csv import csv_fields
from correlator.state import Store
from correlator.testing import load_events

logger = logging.getLogger(__name__)

#: Evidence references kept per rule in an incident during an evaluation: all of them, so
#: event-level recall is not cut by the explanation's size (``correlation.max_references``).
ALL_REFERENCES: Final = 10_000_000
#: Event ids a finding keeps (``rules.max_evidence``, at its ceiling): a finding standing
#: for more events references only this many, so event recall is then a lower bound.
MAX_EVIDENCE: Final = 1000
#: Field names the label-file columns are put in, on every event with a listed uid.
_FILE_LABEL: Final = "furui.evaluation.label"
_FILE_DETAIL: Final = "furui.evaluation.detailedlabel"
#: Bytes read to find a log's field names.
_HEAD_BYTES: Final = 65536


@dataclass(frozen=True, slots=True)
class HostList:
    """Host labels from a file: ``ip,label[,family][,capture]``.

    Attributes:
        rows: (capture filter or ``""`` for every capture, ip, class, family).
        path: the file.
    """

    rows: tuple[tuple[str, str, HostClass, str], ...]
    path: str
    attack_pattern: str = ATTACK_PATTERN


@dataclass(frozen=True, slots=True)
class FlowList:
    """Flow labels from a file: ``uid,label[,detailedlabel][,capture]``.

    Attributes:
        rows: (capture filter or ``""``, uid, label text, detailed label).
        path: the file.
    """

    rows: tuple[tuple[str, str, str, str], ...]
    path: str
    attack_pattern: str = ATTACK_PATTERN


LabelSource = LabelColumns | HostList | FlowList


class ModelMode(enum.StrEnum):
    """How the flow model takes part in an evaluation."""

    SETTINGS = "settings"  # as ``ml.enabled`` says
    OFF = "off"  # heuristic rules, Suricata alerts and Zeek notices only
    SHIPPED = "shipped"  # the shipped bundle (in-sample on the captures it was trained on)
    HELD_OUT = "held-out"  # per capture, a model fitted on the other captures given


@dataclass(frozen=True, slots=True)
class Capture:
    """Logs analysed together, and the name they are reported under."""

    name: str
    logs: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class CaptureSet:
    """Captures found under the paths given, and files passed over with the reason."""

    captures: tuple[Capture, ...]
    passed_over: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CaptureRun:
    """How the pipeline run over one capture went.

    Attributes:
        name: the capture.
        logs: its files.
        events: events read.
        rejects: records that could not be read.
        findings: findings of every detector.
        incidents: incidents.
        truncated: findings that stand for more events than they reference (event-level
            recall on them is a lower bound).
        seconds: wall time of the run.
    """

    name: str
    logs: tuple[str, ...]
    events: int
    rejects: int
    findings: int
    incidents: int
    truncated: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation: what ran, and the results per capture.

    Attributes:
        mode: how the model took part (``ModelMode``).
        model: the model (``name@version``, or ``disabled``).
        labels: where the labels came from.
        rules: heuristic rules that ran.
        ruleset: fingerprint of the rule pack loaded (``RuleSet.fingerprint``).
        runs: how each capture's run went.
        results: each capture's outcome.
    """

    mode: str
    model: str
    labels: str
    rules: int
    ruleset: str
    runs: tuple[CaptureRun, ...]
    results: tuple[CaptureResult, ...]
    passed_over: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def parse_labels(spec: str, *, attack_pattern: str | None = None) -> LabelSource:
    """The label source a ``--labels`` value names.

    An existing file is a label file (CSV with a header: ``ip,label`` lists hosts,
    ``uid,label`` lists flows; optional ``family``/``detailedlabel`` and ``capture``
    columns); anything else is a label field name (``label``, ``zeek.connection.label``).

    Raises:
        InputError: the file is unreadable or has neither an ``ip`` nor a ``uid`` column.
    """
    pattern = ATTACK_PATTERN if attack_pattern is None else attack_pattern
    path = Path(spec)
    if path.is_file():
        return replace(read_label_file(path), attack_pattern=pattern)
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        raise InputError(f"{spec}: no such label file")
    return LabelColumns(label=spec, attack_pattern=pattern)


def read_label_file(path: Path) -> HostList | FlowList:
    """Read a host list or flow list (``parse_labels``).

    Raises:
        InputError: unreadable file, no header, or a row without its key or label.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the label file ({error})") from error
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    reader.fieldnames = header
    key = "ip" if "ip" in header else "uid" if "uid" in header else None
    if key is None or "label" not in header:
        raise InputError(
            f"{path}:1: a label file needs a header with ip,label (hosts) or uid,label (flows)"
        )
    host_rows: list[tuple[str, str, HostClass, str]] = []
    flow_rows: list[tuple[str, str, str, str]] = []
    for number, row in enumerate(reader, start=2):
        value, label = (row.get(key) or "").strip(), (row.get("label") or "").strip()
        if not value or not label:
            raise InputError(f"{path}:{number}: a row needs both {key} and label")
        capture = (row.get("capture") or "").strip()
        if key == "ip":
            family = (row.get("family") or "").strip()
            host_rows.append((capture, value, host_class(label), family))
        else:
            detail = (row.get("detailedlabel") or row.get("detailed-label") or "").strip()
            flow_rows.append((capture, value, label, detail))
    if key == "ip":
        return HostList(tuple(host_rows), str(path))
    return FlowList(tuple(flow_rows), str(path))


def find_captures(paths: Sequence[Path], source: LabelSource) -> CaptureSet:
    """The captures under ``paths`` (module docstring).

    Raises:
        InputError: a path does not exist or is not a log.
    """
    captures: list[Capture] = []
    passed: list[tuple[str, str]] = []
    columns = source if isinstance(source, LabelColumns) else None
    for given in paths:
        found = discover([given])
        passed.extend((str(s.path), s.reason) for s in found.skipped)
        by_folder: dict[Path, list[LogFile]] = defaultdict(list)
        for log in found.logs:
            by_folder[log.path.parent].append(log)
        for folder, logs in sorted(by_folder.items()):
            if columns is None:
                captures.append(Capture(_name(given, folder), tuple(log.path for log in logs)))
                continue
            chosen, skipped = _labelled_groups(logs, columns)
            passed.extend(skipped)
            if len(chosen) == 1:
                captures.append(Capture(_name(given, folder), chosen[0]))
            else:
                captures.extend(Capture(_name(given, group[0]), group) for group in chosen)
    return CaptureSet(tuple(captures), tuple(passed))


def evaluate_captures(
    captures: Sequence[Capture],
    settings: Settings,
    source: LabelSource,
    *,
    mode: ModelMode = ModelMode.SETTINGS,
    on_capture: Callable[[CaptureRun], None] | None = None,
) -> Evaluation:
    """Run the pipeline over each capture in a temporary store and score its incidents.

    Args:
        captures: from ``find_captures``.
        settings: the run's settings (the store path is replaced by a temporary one, and
            references are kept in full: ``ALL_REFERENCES``, ``MAX_EVIDENCE``).
        source: where the labels come from.
        mode: how the flow model takes part (``ModelMode``).
        on_capture: called after each capture (progress).

    Raises:
        ModelError: the shipped bundle fails verification.
        InputError: held out, but no labelled conn log to fit a model on.
    """
    local = _evaluation_settings(settings, mode)
    context = NormaliseContext(
        internal=Networks.of(list(local.network.internal)),
        trust_zeek_local=local.network.trust_zeek_local,
        community_id_seed=local.network.community_id_seed,
    )
    held_out = None
    if mode is ModelMode.HELD_OUT:
        # refitting needs scikit-learn: imported only when asked for (a second of start-up)
        from correlator.evaluation.held_out import HeldOutModels  # noqa: PLC0415

        held_out = HeldOutModels.of(captures, local)
    rules, ruleset = _rules_in_force(local, context)
    runs: list[CaptureRun] = []
    results: list[CaptureResult] = []
    for capture in captures:
        truth = capture_truth(capture, source, context)
        detectors = held_out.detectors(capture, local) if held_out is not None else None
        run, incidents = run_capture(capture, local, detectors=detectors)
        results.append(score_capture(capture.name, truth, incident_views(incidents)))
        runs.append(run)
        if on_capture is not None:
            on_capture(run)
    model = ml_provenance(local)
    if held_out is not None:
        model = f"{model} recipe, refitted without each capture"
    if _rules_in_force(local, context)[1] != ruleset:
        logger.warning("rule files changed during the evaluation: re-run it for exact figures")
    return Evaluation(
        mode=mode.value,
        model=model,
        labels=_describe(source),
        rules=rules,
        ruleset=ruleset,
        runs=tuple(runs),
        results=tuple(results),
    )


def capture_truth(capture: Capture, source: LabelSource, context: NormaliseContext) -> Truth:
    """What the labels say about one capture."""
    streams = _streams(capture.logs, context)
    if isinstance(source, FlowList):
        streams = _with_flow_labels(streams, source, capture.name)
        columns = LabelColumns(_FILE_LABEL, (_FILE_DETAIL,), source.attack_pattern)
        return truth_of(labelled_events(streams, columns), capture.name, source.attack_pattern)
    if isinstance(source, LabelColumns):
        return truth_of(labelled_events(streams, source), capture.name, source.attack_pattern)
    # a host list: flows from the logs' own label columns where there are any
    columns = LabelColumns(attack_pattern=source.attack_pattern)
    truth = truth_of(labelled_events(streams, columns), capture.name, columns.attack_pattern)
    listed = {
        ip: (klass, family)
        for where, ip, klass, family in source.rows
        if not where or where in capture.name
    }
    return with_host_labels(truth, listed)


def run_capture(
    capture: Capture, settings: Settings, *, detectors: Sequence[Detector] | None = None
) -> tuple[CaptureRun, pa.Table]:
    """Analyse one capture in a temporary store: how it went, and its incidents.

    ``detectors`` replaces the ones the settings build (a held-out model).
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="furui-eval-") as folder:
        store_settings = settings.store.model_copy(update={"path": Path(folder) / "eval.duckdb"})
        local = settings.model_copy(update={"store": store_settings})
        with Store.open(
            store_settings.path, memory_limit=local.store.memory_limit, threads=local.store.threads
        ) as store:
            report = analyze(
                list(capture.logs),
                local,
                store,
                detectors=detectors,
                command=f"eval {capture.name}",
            )
            findings = store.findings()
    run = CaptureRun(
        name=capture.name,
        logs=tuple(str(p) for p in capture.logs),
        events=report.events,
        rejects=report.rejects,
        findings=report.findings,
        incidents=report.incidents.num_rows,
        truncated=_truncated(findings),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "%s: %d events, %d findings, %d incidents",
        run.name,
        run.events,
        run.findings,
        run.incidents,
    )
    return run, report.incidents


def _evaluation_settings(settings: Settings, mode: ModelMode) -> Settings:
    update: dict[str, object] = {
        "correlation": settings.correlation.model_copy(update={"max_references": ALL_REFERENCES}),
        "rules": settings.rules.model_copy(update={"max_evidence": MAX_EVIDENCE}),
    }
    if mode is not ModelMode.SETTINGS:
        update["ml"] = settings.ml.model_copy(update={"enabled": mode is not ModelMode.OFF})
    return settings.model_copy(update=update)


def _rules_in_force(settings: Settings, context: NormaliseContext) -> tuple[int, str]:
    """How many heuristic rules run, and the fingerprint of the pack they come from."""
    engine = build_rule_engine(settings, context.internal, site_allowlist(settings))
    pack = load_rules([packaged_rules(), *(Path(p) for p in settings.rules.paths)])
    return len(engine.rules), pack.fingerprint


def _truncated(findings: pa.Table) -> int:
    if not findings.num_rows:
        return 0
    stands_for = pc.fill_null(findings.column("furui.events"), 1)
    kept = pc.add(pc.fill_null(pc.list_value_length(findings.column("furui.event_ids")), 0), 1)
    return int(pc.sum(pc.greater(stands_for, kept)).as_py() or 0)


def _labelled_groups(
    logs: Sequence[LogFile], columns: LabelColumns
) -> tuple[list[tuple[Path, ...]], list[tuple[str, str]]]:
    """The captures of one folder, and the logs passed over (module docstring)."""
    labelled = [log for log in logs if _has_label(log, columns)]
    if not labelled:
        return [], [(str(log.path), f"no label field {columns.label!r}") for log in logs]
    types = {log.log_type for log in labelled}
    skipped = [
        (str(log.path), f"unlabelled {log.log_type} log beside a labelled one (same traffic)")
        for log in logs
        if log not in labelled and log.log_type in types
    ]
    conn = [log for log in labelled if log.log_type == "conn"]
    if len(conn) > 1:
        return [(log.path,) for log in labelled], skipped
    kept = tuple(log.path for log in logs if log in labelled or log.log_type not in types)
    return [kept], skipped


def _has_label(log: LogFile, columns: LabelColumns) -> bool:
    """Whether the log has the label column, judged from its header (or first record)."""
    return any(
        name == columns.label or columns.label.endswith(f".{name}") for name in _head_fields(log)
    )


def _head_fields(log: LogFile) -> list[str]:
    """Field names of a log from its first bytes: TSV ``#fields``, CSV header, JSON keys."""
    with open_stream(log.path) as stream:
        head = stream.read(_HEAD_BYTES).removeprefix(b"\xef\xbb\xbf")
    lines = head.split(b"\n")
    if log.format is LogFormat.ZEEK_TSV:
        line = next((x for x in lines if x.startswith(b"#fields")), b"")
        return line.rstrip(b"\r").decode("utf-8", errors="replace").split("\t")[1:]
    if log.format is LogFormat.ZEEK_CSV:
        return list(csv_fields(lines[0]))
    try:
        record = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        return []
    return [str(key) for key in record] if isinstance(record, dict) else []


def _streams(logs: Sequence[Path], context: NormaliseContext) -> Mapping[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    for path in logs:
        for stream, table in load_events(path, context=context).streams.items():
            parts[stream].append(table)
    return {stream: unify(tables) for stream, tables in parts.items()}


def _with_flow_labels(
    streams: Mapping[str, pa.Table], source: FlowList, capture: str
) -> dict[str, pa.Table]:
    rows = [(uid, label, detail) for where, uid, label, detail in source.rows if where in capture]
    uids = pa.array([r[0] for r in rows], pa.string())
    labels = pa.array([r[1] for r in rows], pa.string())
    details = pa.array([r[2] for r in rows], pa.string())
    out = {}
    for stream, table in streams.items():
        if "zeek.session_id" not in table.column_names:
            continue
        index = pc.index_in(pc.cast(table.column("zeek.session_id"), pa.string()), uids)
        out[stream] = table.append_column(_FILE_LABEL, labels.take(index)).append_column(
            _FILE_DETAIL, details.take(index)
        )
    return out


def _name(given: Path, where: Path) -> str:
    """``<name of the path given>/<where under it>``: stable across machines."""
    root = given.resolve()
    if root.is_file():
        return f"{root.parent.name}/{root.name}"
    target = where.resolve()
    if root == target:
        return root.name
    return f"{root.name}/{target.relative_to(root).as_posix()}"


def _describe(source: LabelSource) -> str:
    if isinstance(source, LabelColumns):
        return f"field {source.label} (attacks on devices: {source.attack_pattern!r})"
    kind = "host list" if isinstance(source, HostList) else "flow list"
    return f"{kind} {source.path}"
