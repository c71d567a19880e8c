"""The flow classifier as a detector: Zeek conn flows above the threshold become findings.

Context features count the flows of a whole window (``features.WINDOW_SECONDS``), so flows
are held until their window has closed: a window is scored once a flow two windows later
has been seen (Zeek logs a connection when it ends, so flows of a window keep arriving for
a while), or when the run's input ends (``finish``). The ``dns`` and ``ssl`` events of a
window are joined to its flows when it is scored, so they must have been read by then.
Elasticsearch runs read every stream in time order; file runs read each folder's conn logs
after its other logs (``sources.files.discover``), holding the folder's dns and ssl rows
until its flows come (at most ``MAX_HELD_CONTEXT`` per stream, the latest). A context
stream in step with the conn stream holds the last window back one window more, until it
has moved past it too; one never seen (a sensor without that log) or far behind holds
nothing back, and its features are unknown (NaN) where it logged nothing. At most
``max_held`` flows wait (``MAX_HELD_FLOWS``); beyond that the oldest windows are scored
with the context seen so far (logged once).

The held flows, and the projected ``dns`` answers and ``ssl`` events their windows need
(those of the windows held and the one before), are the detector's state, saved with
every commit with each stream's latest window, so a resumed run scores exactly what an
uninterrupted one would.

Each flagged flow becomes a finding on every internal host it concerns
(``engine.attribution``), scored ``100 × probability × weight``; its message names the
features that drove the score (``explain``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.attribution import attribute
from correlator.engine.base import Detector, build_findings, empty_findings
from correlator.ml import MODEL_NAME as MODEL_NAME  # noqa: PLC0414 - re-exported
from correlator.ml.dns_tls import (
    DNS_HELD,
    DNS_LOOKBACK_WINDOWS,
    DNS_STREAM,
    SSL_HELD,
    SSL_STREAM,
    answers,
)
from correlator.ml.dns_tls import project as project_to
from correlator.ml.explain import Scorer, messages
from correlator.ml.features import extract, window_of
from correlator.normalise.addresses import Networks
from correlator.schema.event import TIMESTAMP
from correlator.settings import Settings

logger = logging.getLogger(__name__)

STREAM: Final = "zeek.connection"
#: Streams whose context is joined to the flows (``dns_tls``).
CONTEXT_STREAMS: Final = (DNS_STREAM, SSL_STREAM)
#: Most flows held while a context stream lags behind the conn stream: about 50 MB of
#: projected columns. Beyond it the oldest windows are scored with the context seen so far.
MAX_HELD_FLOWS: Final = 200_000
#: Most dns (resp. ssl) rows held before the first conn flow arrives (a file run reads a
#: folder's conn logs last): about 7 MB of projected columns per stream, saved with the
#: detector's state.
MAX_HELD_CONTEXT: Final = 100_000
#: Header of the saved state (older states, a bare Arrow stream of flows, are read too).
STATE_MAGIC: Final = b"FURUI-FLOW-STATE-2\n"
RULESET: Final = "ml"
RULE_NAME: Final = "Flow classifier: traffic resembling malware or attacks"
NOVELTY_RULESET: Final = "ml-novelty"
NOVELTY_RULE_NAME: Final = "Novelty: flow unusual for this site"
CATEGORY: Final = "model"
DISABLED: Final = "disabled"

_TYPES: Final[dict[str, pa.DataType]] = {
    "event.id": pa.string(),
    "event.dataset": pa.string(),
    "zeek.session_id": pa.string(),
    "network.community_id": pa.string(),
    "source.port": pa.int32(),
    "@timestamp": TIMESTAMP,
    "source.ip": pa.string(),
    "destination.ip": pa.string(),
    "destination.port": pa.int32(),
    "network.transport": pa.string(),
    "network.protocol": pa.string(),
    "network.direction": pa.string(),
    "event.duration": pa.int64(),
    "zeek.connection.orig_bytes": pa.int64(),
    "zeek.connection.resp_bytes": pa.int64(),
    "source.packets": pa.int64(),
    "destination.packets": pa.int64(),
    "source.bytes": pa.int64(),
    "destination.bytes": pa.int64(),
    "zeek.connection.state": pa.string(),
    "zeek.connection.history": pa.string(),
}
#: The columns held per flow: the features' inputs and what findings reference.
#: (``tests/test_ml_detector.py`` checks that they include ``features.INPUT_COLUMNS``)
HELD: Final = pa.schema([(name, _TYPES[name]) for name in _TYPES])


def build_ml_detectors(
    settings: Settings, internal: Networks, inbound_factor: float
) -> list[Detector]:
    """The model detectors a run uses: none when ``ml.enabled`` is false (logged).

    Raises:
        ModelError: a bundle is missing or fails verification (never silently skipped).
    """
    ml = settings.ml
    if not ml.enabled:
        logger.warning("ML scoring is off (ml.enabled = false): incidents record model disabled")
        return []
    # scikit-learn and skops take a second to import: only runs that score pay for them
    from correlator.ml.bundle import ModelBundle  # noqa: PLC0415
    from correlator.ml.novelty import NoveltyModel  # noqa: PLC0415

    bundle = ModelBundle.load(
        Path(ml.path) if ml.path else None, expected_version=ml.expected_version
    )
    logger.info("scoring conn flows with %s (threshold %.2f)", bundle.ref, bundle.threshold)
    found: list[Detector] = [FlowClassifier(bundle, internal, inbound_factor, ml.weight)]
    if ml.novelty_path:
        novelty = NoveltyModel.load(Path(ml.novelty_path))
        logger.info("novelty signal from %s", novelty.ref)
        found.append(
            FlowClassifier(
                novelty,
                internal,
                inbound_factor,
                ml.novelty_weight,
                family=NOVELTY_RULESET,
                rule_name=NOVELTY_RULE_NAME,
            )
        )
    return found


def ml_provenance(settings: Settings) -> str:
    """What incidents record as ``furui.model``: ``name@version``, or ``disabled``."""
    if not settings.ml.enabled:
        return DISABLED
    return f"{MODEL_NAME}@{settings.ml.expected_version}"


@dataclass(slots=True)
class FlowClassifier:
    """Scores ``zeek.connection`` events with a verified model (or novelty) bundle.

    Attributes:
        bundle: the verified model.
        internal: the site's internal networks (findings are about internal hosts).
        inbound_factor: weight of evidence on a host attacked from outside.
        weight: share of ``100 × probability`` a finding scores (``ml.weight``).
        family: the findings' ruleset (``ml``, or ``ml-novelty`` for the novelty signal).
        rule_name: the findings' rule name.
    """

    bundle: Scorer
    internal: Networks
    inbound_factor: float
    weight: float
    family: str = RULESET
    rule_name: str = RULE_NAME
    max_held: int = MAX_HELD_FLOWS
    _held: list[pa.Table] = field(default_factory=list)
    _context: dict[str, list[pa.Table]] = field(
        default_factory=lambda: {s: [] for s in CONTEXT_STREAMS}
    )
    _latest: dict[str, int] = field(default_factory=dict)
    _warned: bool = False
    _capped: set[str] = field(default_factory=set)

    @property
    def ruleset(self) -> str:
        """Rule family name."""
        return self.family

    @property
    def streams(self) -> frozenset[str]:
        """Streams read: conn flows, and the dns and ssl events joined to them."""
        return frozenset({STREAM, *CONTEXT_STREAMS})

    @property
    def model_ref(self) -> str:
        """``name@version`` of the model, recorded on incidents."""
        return self.bundle.ref

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """Hold the batch (flows, or their DNS/TLS context); score the closed windows."""
        if not events.num_rows:
            return empty_findings()
        newest = int(window_of(events).max())
        self._latest[stream] = max(self._latest.get(stream, newest), newest)
        if stream == STREAM:
            self._held.append(project(events))
        elif stream == DNS_STREAM:
            self._keep(stream, answers(events))
        elif stream == SSL_STREAM:
            self._keep(stream, project_to(events, SSL_HELD))
        before = self._closed_before()
        if before is None:
            self._trim()
            return empty_findings()
        return self._score_closed(before)

    def finish(self) -> pa.Table:
        """Score every window still held."""
        return self._score_closed(None)

    def snapshot(self) -> bytes:
        """Held flows, held dns/ssl rows and each stream's latest window (Arrow IPC)."""
        tables = [
            pa.concat_tables(self._held) if self._held else HELD.empty_table(),
            *(_concat(self._context[s], _SCHEMAS[s]) for s in CONTEXT_STREAMS),
        ]
        streams = [_ipc(t) for t in tables]
        header = {"latest": self._latest, "sizes": [len(b) for b in streams]}
        return STATE_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + b"".join(streams)

    def restore(self, state: bytes) -> None:
        """Take back the flows and context held when the previous run stopped."""
        self._held, self._latest = [], {}
        self._context = {s: [] for s in CONTEXT_STREAMS}
        if not state:
            return
        if not state.startswith(STATE_MAGIC):  # a state saved before dns/ssl were read
            table = pa.ipc.open_stream(state).read_all()
            latest = (table.schema.metadata or {}).get(b"latest", b"")
            if latest:
                self._latest[STREAM] = int(latest)
            if table.num_rows:
                self._held = [table.replace_schema_metadata(None)]
            return
        line, _, rest = state[len(STATE_MAGIC) :].partition(b"\n")
        header = json.loads(line)
        self._latest = {str(k): int(v) for k, v in header["latest"].items()}
        tables, offset = [], 0
        for size in header["sizes"]:
            tables.append(pa.ipc.open_stream(rest[offset : offset + size]).read_all())
            offset += size
        flows, *context = tables
        if flows.num_rows:
            self._held = [flows]
        for name, table in zip(CONTEXT_STREAMS, context, strict=True):
            if table.num_rows:
                self._context[name] = [table]

    def _keep(self, stream: str, rows: pa.Table) -> None:
        if rows.num_rows:
            self._context[stream].append(rows)

    def _closed_before(self) -> int | None:
        """Windows before this one are closed (module docstring); ``None``: none is."""
        conn = self._latest.get(STREAM)
        if conn is None:
            return None
        complete = conn - 1  # a flow two windows later has been seen
        # a context stream in step with the conn stream (it reached the window before
        # ``complete``) holds that last window back until it reaches ``complete`` too;
        # one never seen, or far behind (a sensor without that log, a file run whose
        # context came from another time), holds nothing back
        seen = [self._latest.get(s) for s in CONTEXT_STREAMS]
        behind = any(w is not None and w == complete - 1 for w in seen)
        before = complete - 1 if behind else complete
        held = sum(t.num_rows for t in self._held)
        if held <= self.max_held:
            return before
        windows = np.sort(window_of(pa.concat_tables(self._held)))
        # the earliest cut leaving at most max_held flows, never into open windows
        cut = min(int(windows[held - self.max_held - 1]) + 1, complete)
        if before >= cut:
            return before
        if not self._warned:
            logger.warning(
                "over %d conn flows wait for the dns/ssl events of their windows: the "
                "oldest windows are scored without the context still to come",
                self.max_held,
            )
            self._warned = True
        return cut

    def _score_closed(self, before: int | None) -> pa.Table:
        """Score the held flows of windows earlier than ``before`` (all when ``None``)."""
        if not self._held:
            self._trim()
            return empty_findings()
        held = pa.concat_tables(self._held)
        if before is None:
            ready, self._held = held, []
        else:
            closed = pa.array(window_of(held) < before)
            ready = held.filter(closed)
            rest = held.filter(pc.invert(closed))
            self._held = [rest] if rest.num_rows else []
        dns, ssl = (_concat(self._context[s], _SCHEMAS[s]) for s in CONTEXT_STREAMS)
        found = self.score(ready, dns=dns, ssl=ssl)
        self._trim()
        return found

    def _trim(self) -> None:
        """Drop the dns/ssl rows that no window still to be scored can use."""
        if self._held:
            first = int(window_of(pa.concat_tables(self._held)).min())
        elif STREAM in self._latest:
            first = self._latest[STREAM] - 1  # the earliest window flows normally go to
        else:
            self._cap_context()  # no flow yet: a file run reads conn logs last
            return
        floors = {DNS_STREAM: first - DNS_LOOKBACK_WINDOWS, SSL_STREAM: first}
        for stream in CONTEXT_STREAMS:
            if not self._context[stream]:
                continue
            table = pa.concat_tables(self._context[stream])
            kept = table.filter(pa.array(window_of(table) >= floors[stream]))
            self._context[stream] = [kept] if kept.num_rows else []

    def _cap_context(self) -> None:
        """Before any flow: keep every context row, up to the latest ``MAX_HELD_CONTEXT``."""
        for stream in CONTEXT_STREAMS:
            rows = sum(t.num_rows for t in self._context[stream])
            if rows <= MAX_HELD_CONTEXT:
                continue
            table = pa.concat_tables(self._context[stream])
            latest = np.argsort(window_of(table), kind="stable")[rows - MAX_HELD_CONTEXT :]
            self._context[stream] = [table.take(pa.array(np.sort(latest)))]
            if stream not in self._capped:
                logger.warning(
                    "over %d %s events arrived before any conn flow: the oldest are "
                    "dropped from the flow model's context",
                    MAX_HELD_CONTEXT,
                    stream,
                )
                self._capped.add(stream)

    def score(
        self, flows: pa.Table, *, dns: pa.Table | None = None, ssl: pa.Table | None = None
    ) -> pa.Table:
        """Findings for the flagged flows among ``flows`` (whole windows).

        ``dns`` and ``ssl``: the events of those windows (and, for DNS, the window before);
        without any, the DNS/TLS features are NaN (not visible).
        """
        if not flows.num_rows:
            return empty_findings()
        features = extract(
            flows,
            dns=dns if dns is not None and dns.num_rows else None,
            ssl=ssl if ssl is not None and ssl.num_rows else None,
        )
        probability = self.bundle.probability(features)
        flagged = np.flatnonzero(probability >= self.bundle.threshold)
        if not len(flagged):
            return empty_findings()
        picked = flows.take(pa.array(flagged))
        p = probability[flagged]
        attributed = attribute(
            picked,
            np.round(100.0 * p * self.weight, 2),
            np.zeros(len(flagged), dtype=bool),
            internal=self.internal,
            inbound_factor=self.inbound_factor,
        )
        if not len(attributed.rows):
            return empty_findings()
        # explain only the flows that became findings (those on internal hosts)
        used = np.unique(attributed.rows)
        text = np.full(len(flagged), None, dtype=object)
        text[used] = messages(self.bundle, features[flagged][used])
        n = picked.num_rows
        return build_findings(
            picked,
            attributed,
            rule_id=pa.repeat(pa.scalar(self.bundle.ref), n),
            rule_name=pa.repeat(pa.scalar(self.rule_name), n),
            rule_category=pa.repeat(pa.scalar(CATEGORY), n),
            ruleset=self.family,
            message=pa.array(text.tolist(), pa.string()),
        )


def project(events: pa.Table) -> pa.Table:
    """The held columns of ``events`` in fixed types (absent ones as nulls)."""
    return project_to(events, HELD)


_SCHEMAS: Final[dict[str, pa.Schema]] = {DNS_STREAM: DNS_HELD, SSL_STREAM: SSL_HELD}


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
