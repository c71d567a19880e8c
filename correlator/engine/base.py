"""The interface every detector implements, and the helper that builds finding rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.finding import FINDING_SCHEMA


class Detector(Protocol):
    """Turns normalised events into findings.

    Detectors are pure objects over event batches: no I/O, no threads. ``observe`` is
    called once per batch of each stream listed in ``streams``, in file order (streams
    interleave: one file's batches, then the next file's). ``finish`` is called when the
    input of a run is exhausted, for findings of windows still open. A detector that keeps
    state across batches returns it from ``snapshot``; the store saves it with every commit
    and hands it back to ``restore`` when the next run starts, so results do not depend on
    where runs or crashes cut the input. Findings are identified by ``finding.id``: a
    finding emitted again with the same id (a window that grew) replaces the earlier one.
    """

    @property
    def ruleset(self) -> str:
        """Name of the detector's rule family (``suricata``, ``zeek-notice`` …)."""
        ...

    @property
    def streams(self) -> frozenset[str]:
        """The streams (``zeek.notice``, ``suricata.eve.alert`` …) this detector reads."""
        ...

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """Findings (``FINDING_SCHEMA``) for one batch of events; possibly empty."""
        ...

    def finish(self) -> pa.Table:
        """Findings still pending when the run's input ends; possibly empty."""
        ...

    def snapshot(self) -> bytes:
        """The detector's state, to be checkpointed; empty for a stateless detector."""
        ...

    def restore(self, state: bytes) -> None:
        """Take back a state returned by ``snapshot`` in an earlier run."""
        ...


class Stateless:
    """Defaults for detectors that judge each event on its own."""

    def finish(self) -> pa.Table:
        """Nothing is pending."""
        return empty_findings()

    def snapshot(self) -> bytes:
        """No state."""
        return b""

    def restore(self, state: bytes) -> None:
        """No state to take back."""
        del state


@dataclass(frozen=True, slots=True)
class Attributed:
    """Events selected as findings, each attributed to one internal host.

    Attributes:
        rows: index of the event each finding comes from (an event may appear twice: once
            for each internal host it concerns).
        host: the internal host of each finding.
        role: ``source`` or ``target``.
        peer: the other end, if any.
        score: risk score of each finding.
    """

    rows: npt.NDArray[np.int64]
    host: pa.Array
    role: pa.Array
    peer: pa.Array
    score: npt.NDArray[np.float64]


def build_findings(
    events: pa.Table,
    attributed: Attributed,
    *,
    rule_id: pa.Array,
    rule_name: pa.Array,
    rule_category: pa.Array | None,
    ruleset: str,
    techniques: pa.Array | None = None,
    message: pa.Array | None = None,
    tactics: pa.Array | None = None,
    allowlisted: pa.Array | None = None,
) -> pa.Table:
    """Assemble finding rows from attributed events and per-event rule columns.

    The finding id joins ruleset, rule, event and role, so the same evidence seen again
    (a re-run, a resumed file) is recognised as the same finding. ``allowlisted`` holds,
    per event, the label of the allowlist entry that matched it (or null).
    """
    take = pa.array(attributed.rows)
    picked = events.take(take)
    n = len(attributed.rows)

    def col(name: str, dtype: pa.DataType) -> pa.Array:
        if name in picked.column_names:
            return pc.cast(picked.column(name).combine_chunks(), dtype)
        return pa.nulls(n, dtype)

    rule_ids = pc.cast(rule_id.take(take), pa.string())
    event_ids = col("event.id", pa.string())
    finding_id = pc.binary_join_element_wise(
        pa.repeat(pa.scalar(ruleset), n), rule_ids, event_ids, attributed.role, "|"
    )
    arrays = {
        "finding.id": finding_id,
        "@timestamp": col("@timestamp", FINDING_SCHEMA.field("@timestamp").type),
        "host.ip": attributed.host,
        "furui.role": attributed.role,
        "furui.peer_ip": attributed.peer,
        "rule.id": rule_ids,
        "rule.name": pc.cast(rule_name.take(take), pa.string()),
        "rule.category": (
            pc.cast(rule_category.take(take), pa.string())
            if rule_category is not None
            else pa.nulls(n, pa.string())
        ),
        "rule.ruleset": pa.repeat(pa.scalar(ruleset), n),
        "event.risk_score": pa.array(attributed.score, pa.float64()),
        "message": (
            pc.cast(message.take(take), pa.string())
            if message is not None
            else pa.nulls(n, pa.string())
        ),
        "threat.technique.id": (
            techniques.take(take)
            if techniques is not None
            else pa.nulls(n, FINDING_SCHEMA.field("threat.technique.id").type)
        ),
        "event.id": event_ids,
        "event.dataset": col("event.dataset", pa.string()),
        "zeek.session_id": col("zeek.session_id", pa.string()),
        "suricata.eve.flow_id": col("suricata.eve.flow_id", pa.string()),
        "network.community_id": col("network.community_id", pa.string()),
        "source.ip": col("source.ip", pa.string()),
        "destination.ip": col("destination.ip", pa.string()),
        "destination.port": col("destination.port", pa.int32()),
        "threat.tactic.id": (
            tactics.take(take)
            if tactics is not None
            else pa.nulls(n, FINDING_SCHEMA.field("threat.tactic.id").type)
        ),
        "furui.allowlist": (
            pc.cast(allowlisted.take(take), pa.string())
            if allowlisted is not None
            else pa.nulls(n, pa.string())
        ),
    }
    return pa.Table.from_arrays(
        [pc.cast(arrays.get(f.name, pa.nulls(n, f.type)), f.type) for f in FINDING_SCHEMA],
        schema=FINDING_SCHEMA,
    )


def empty_findings() -> pa.Table:
    """A findings table with no rows."""
    return FINDING_SCHEMA.empty_table()
