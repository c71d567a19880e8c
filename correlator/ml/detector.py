"""The flow classifier as a detector: Zeek conn flows above the threshold become findings.

Context features count the flows of a whole window (``features.WINDOW_SECONDS``), so flows
are held until their window has closed: a window is scored once a flow two windows later
has been seen (Zeek logs a connection when it ends, so flows of a window keep arriving for
a while), or when the run's input ends. The held flows are the detector's state, saved
with every commit, so a resumed run scores exactly what an uninterrupted one would.
Memory is bounded by about two windows of conn flows (projected to the columns used).

Each flagged flow becomes a finding on every internal host it concerns
(``engine.attribution``), scored ``100 × probability × weight``; its message names the
features that drove the score (``explain``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.attribution import attribute
from correlator.engine.base import Detector, build_findings, empty_findings
from correlator.ml.bundle import MODEL_NAME, ModelBundle
from correlator.ml.explain import Scorer, messages
from correlator.ml.features import extract, window_of
from correlator.ml.novelty import NoveltyModel
from correlator.normalise.addresses import Networks
from correlator.schema.event import TIMESTAMP
from correlator.settings import Settings

logger = logging.getLogger(__name__)

STREAM: Final = "zeek.connection"
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
    _held: list[pa.Table] = field(default_factory=list)
    _latest: int | None = None

    @property
    def ruleset(self) -> str:
        """Rule family name."""
        return self.family

    @property
    def streams(self) -> frozenset[str]:
        """Streams read."""
        return frozenset({STREAM})

    @property
    def model_ref(self) -> str:
        """``name@version`` of the model, recorded on incidents."""
        return self.bundle.ref

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """Hold the batch's flows; score the windows that have closed."""
        del stream
        if not events.num_rows:
            return empty_findings()
        held = project(events)
        newest = int(window_of(held).max())
        self._latest = newest if self._latest is None else max(self._latest, newest)
        self._held.append(held)
        return self._score_closed(self._latest - 1)

    def finish(self) -> pa.Table:
        """Score every window still held."""
        return self._score_closed(None)

    def snapshot(self) -> bytes:
        """The held flows and the latest window seen, as an Arrow IPC stream."""
        table = pa.concat_tables(self._held) if self._held else HELD.empty_table()
        latest = b"" if self._latest is None else str(self._latest).encode()
        table = table.replace_schema_metadata({b"latest": latest})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    def restore(self, state: bytes) -> None:
        """Take back the flows held when the previous run stopped."""
        self._held, self._latest = [], None
        if not state:
            return
        table = pa.ipc.open_stream(state).read_all()
        latest = (table.schema.metadata or {}).get(b"latest", b"")
        self._latest = int(latest) if latest else None
        if table.num_rows:
            self._held = [table.replace_schema_metadata(None)]

    def _score_closed(self, before: int | None) -> pa.Table:
        """Score the held flows of windows earlier than ``before`` (all when ``None``)."""
        if not self._held:
            return empty_findings()
        held = pa.concat_tables(self._held)
        if before is None:
            ready, self._held = held, []
        else:
            closed = pa.array(window_of(held) < before)
            ready = held.filter(closed)
            rest = held.filter(pc.invert(closed))
            self._held = [rest] if rest.num_rows else []
        return self.score(ready)

    def score(self, flows: pa.Table) -> pa.Table:
        """Findings for the flagged flows among ``flows`` (whole windows)."""
        if not flows.num_rows:
            return empty_findings()
        features = extract(flows)
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
    n = events.num_rows
    arrays = [
        pc.cast(events.column(f.name).combine_chunks(), f.type)
        if f.name in events.column_names
        else pa.nulls(n, f.type)
        for f in HELD
    ]
    return pa.Table.from_arrays(arrays, schema=HELD)
