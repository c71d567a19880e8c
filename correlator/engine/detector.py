"""The rule engine as a ``Detector`` (ruleset ``furui``): every heuristic rule at once.

Rules are compiled into one evaluator per kind (``engine/registry.py``); each batch of a
stream is handed to the kinds that read it, once, and each kind evaluates all of its rules
over it with shared predicate masks (``engine/batch.py``) and one grouped merge. Findings
leave when a window closes (its end plus ``lateness`` is behind the stream's watermark) or
when ``finish`` is called at the end of the input, so each finding is emitted once per
commit and its final content does not depend on how the input was cut into batches.

State (``snapshot``) is one container of Arrow IPC streams, one per kind table, headed by
the ruleset fingerprint and each rule's content hash: a rule whose file changed starts from
empty state, the others carry on.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.allowlist import Allowlist, load_allowlist
from correlator.engine.base import empty_findings
from correlator.engine.batch import Batch
from correlator.engine.kinds.base import EMISSION_SCHEMA, Context, Kind, Limits
from correlator.engine.loader import RuleSet, load_rules, packaged_rules
from correlator.engine.registry import KINDS
from correlator.engine.rule import Rule
from correlator.normalise.addresses import Networks
from correlator.schema.attack import load_attack
from correlator.schema.event import TIMESTAMP
from correlator.schema.finding import FINDING_SCHEMA
from correlator.settings import Settings

logger = logging.getLogger(__name__)

RULESET: Final = "furui"
_MAGIC: Final = b"FURUI-RULE-STATE\x01"
_MATURITY: Final = {"experimental": 0, "production": 1}


class RuleEngine:
    """Heuristic rules as a detector (see module docstring)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        context: Context,
        *,
        inbound_factor: float,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.context = context
        self.inbound_factor = inbound_factor
        self.kinds: list[Kind] = [
            KINDS[name](mine, context)
            for name in KINDS
            if (mine := [r for r in rules if r.kind == name])
        ]
        self._by_stream: dict[str, list[Kind]] = {}
        for kind in self.kinds:
            for stream in kind.streams:
                self._by_stream.setdefault(stream, []).append(kind)
        self._meta = _RuleColumns(list(self.rules.values()))
        # the last snapshot's IPC bytes of each table, with a weak reference to the
        # (immutable) table they encode: a table still alive and the same is unchanged
        self._encoded: dict[str, tuple[weakref.ref[pa.Table], bytes]] = {}

    @classmethod
    def select(
        cls,
        ruleset: RuleSet,
        *,
        internal: Networks,
        allowlist: Allowlist | None = None,
        limits: Limits | None = None,
        inbound_factor: float = 0.5,
        min_maturity: str = "production",
        disabled: Sequence[str] = (),
    ) -> RuleEngine:
        """An engine over the rules of a set that are mature enough and not disabled.

        Raises:
            RuleError: the set has invalid rules (a broken pack never runs half-loaded).
        """
        ruleset.raise_errors()
        floor = _MATURITY[min_maturity]
        chosen = [
            r
            for r in ruleset.rules
            if r.spec.metadata.maturity != "deprecated"
            and _MATURITY[r.spec.metadata.maturity] >= floor
            and r.id not in disabled
        ]
        context = Context(internal, allowlist or Allowlist(), limits or Limits())
        return cls(chosen, context, inbound_factor=inbound_factor)

    @property
    def ruleset(self) -> str:
        """Rule family name."""
        return RULESET

    @property
    def streams(self) -> frozenset[str]:
        """Streams read by at least one rule."""
        return frozenset(self._by_stream)

    def observe(self, stream: str, events: pa.Table) -> pa.Table:
        """Fold a batch into every kind that reads its stream; findings of closed windows."""
        kinds = self._by_stream.get(stream)
        if not kinds or not events.num_rows:
            return empty_findings()
        batch = Batch(stream, events, self.context.internal)
        return self._findings([k.observe(batch) for k in kinds])

    def finish(self) -> pa.Table:
        """Findings of every group that changed since the last emission."""
        return self._findings([k.finish() for k in self.kinds])

    def snapshot(self) -> bytes:
        """All kinds' state in one container (module docstring)."""
        tables: dict[str, pa.Table] = {}
        for kind in self.kinds:
            tables.update(kind.snapshot())
        header = {"rules": {r.id: r.sha256 for r in self.rules.values()}, "tables": []}
        body = io.BytesIO()
        options = pa.ipc.IpcWriteOptions(
            compression="zstd" if pa.Codec.is_available("zstd") else None
        )
        encoded: dict[str, tuple[weakref.ref[pa.Table], bytes]] = {}
        for name, table in tables.items():
            cached = self._encoded.get(name)
            if cached is not None and cached[0]() is table:  # unchanged since: a file's run
                data = cached[1]  # of another stream leaves most tables alone
            else:
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
                    writer.write_table(table)
                data = sink.getvalue().to_pybytes()
            encoded[name] = (weakref.ref(table), data)
            header["tables"].append({"name": name, "size": len(data)})  # type: ignore[attr-defined]
            body.write(data)
        self._encoded = encoded
        head = json.dumps(header, sort_keys=True).encode()
        return _MAGIC + struct.pack(">I", len(head)) + head + body.getvalue()

    def restore(self, state: bytes) -> None:
        """Take back a snapshot; state of rules whose file changed is dropped."""
        if not state:
            return
        if not state.startswith(_MAGIC):
            logger.warning("rule state written by another Furui version: starting afresh")
            return
        offset = len(_MAGIC)
        (length,) = struct.unpack(">I", state[offset : offset + 4])
        header = json.loads(state[offset + 4 : offset + 4 + length])
        offset += 4 + length
        same = {
            i
            for i, sha in header["rules"].items()
            if i in self.rules and self.rules[i].sha256 == sha
        }
        tables: dict[str, pa.Table] = {}
        for item in header["tables"]:
            data = state[offset : offset + item["size"]]
            offset += item["size"]
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
            if "rule_id" in table.column_names:
                keep = pc.is_in(
                    table.column("rule_id"), value_set=pa.array(sorted(same), pa.string())
                )
                table = table.filter(keep)
            tables[item["name"]] = table
        for kind in self.kinds:
            kind.restore(tables)

    def _findings(self, parts: list[pa.Table | None]) -> pa.Table:
        found = [p for p in parts if p is not None and p.num_rows]
        if not found:
            return empty_findings()
        return self._meta.findings(
            pa.concat_tables(found).cast(EMISSION_SCHEMA), self.inbound_factor
        )


class _RuleColumns:
    """Per-rule values (name, version, score, ATT&CK) looked up for emission rows."""

    def __init__(self, rules: list[Rule]) -> None:
        attack = load_attack()
        self.ids = pa.array([r.id for r in rules], pa.string())
        self.names = pa.array([r.name for r in rules], pa.string())
        self.versions = pa.array([str(r.version) for r in rules], pa.string())
        self.scores = np.array([r.spec.rule.risk_score for r in rules], dtype=np.float64)
        self.categories = pa.array(
            [(t.name if (t := attack.tactic(r.tactics[0])) is not None else None) for r in rules],
            pa.string(),
        )
        self.techniques = pa.array([r.techniques for r in rules], pa.list_(pa.string()))
        self.tactics = pa.array([r.tactics for r in rules], pa.list_(pa.string()))

    def findings(self, emitted: pa.Table, inbound_factor: float) -> pa.Table:
        """Finding rows (``FINDING_SCHEMA``) from emission rows."""
        index = pc.index_in(emitted.column("rule_id"), value_set=self.ids)
        where = np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)
        take = pa.array(where)
        discount = np.asarray(
            emitted.column("discount").fill_null(False).to_numpy(zero_copy_only=False)
        )
        retract = np.asarray(
            emitted.column("retract").fill_null(False).to_numpy(zero_copy_only=False)
        )
        score = self.scores[where] * np.where(discount, inbound_factor, 1.0)
        score = np.where(retract, 0.0, score)
        ids = [
            f"{RULESET}|{rule}|{hashlib.sha256(key.encode()).hexdigest()[:24]}"
            for rule, key in zip(
                emitted.column("rule_id").to_pylist(),
                emitted.column("key").to_pylist(),
                strict=True,
            )
        ]
        columns: Mapping[str, pa.Array] = {
            "finding.id": pa.array(ids, pa.string()),
            "@timestamp": pc.cast(emitted.column("ts"), pa.int64()).cast(TIMESTAMP),
            "host.ip": emitted.column("host"),
            "furui.role": emitted.column("role"),
            "furui.peer_ip": emitted.column("peer"),
            "rule.id": emitted.column("rule_id"),
            "rule.name": self.names.take(take),
            "rule.category": self.categories.take(take),
            "rule.ruleset": pa.repeat(pa.scalar(RULESET), emitted.num_rows),
            "event.risk_score": pa.array(score, pa.float64()),
            "message": emitted.column("message"),
            "threat.technique.id": self.techniques.take(take),
            "event.id": emitted.column("first_id"),
            "event.dataset": emitted.column("dataset"),
            "zeek.session_id": emitted.column("session"),
            "suricata.eve.flow_id": emitted.column("flow"),
            "network.community_id": emitted.column("community"),
            "source.ip": emitted.column("src"),
            "destination.ip": emitted.column("dst"),
            "destination.port": emitted.column("port"),
            "rule.version": self.versions.take(take),
            "threat.tactic.id": self.tactics.take(take),
            "furui.confidence": emitted.column("confidence"),
            "furui.events": emitted.column("events"),
            "furui.event_ids": emitted.column("event_ids"),
            "furui.allowlist": emitted.column("label"),
            "event.end": pc.cast(emitted.column("last_ts"), pa.int64()).cast(TIMESTAMP),
        }
        arrays = [
            pc.cast(
                (c.combine_chunks() if isinstance(c := columns[f.name], pa.ChunkedArray) else c),
                f.type,
            )
            for f in FINDING_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=FINDING_SCHEMA)
        keep = pc.and_(pc.is_valid(table.column("host.ip")), pc.is_valid(table.column("event.id")))
        return table.filter(keep)


def build_rule_engine(settings: Settings, internal: Networks, allowlist: Allowlist) -> RuleEngine:
    """The engine a run uses, from ``[rules]`` (and ``correlation.inbound_factor``).

    Raises:
        RuleError: a packaged or site rule is invalid (every problem is listed).
    """
    config = settings.rules
    limits = Limits(
        max_evidence=config.max_evidence,
        lateness_seconds=config.lateness_seconds,
        max_groups=config.max_groups,
        max_timestamps=config.max_timestamps,
        max_distinct=config.max_distinct,
        max_steps=config.max_steps,
        settle_seconds=config.settle_seconds,
        max_pending=config.max_pending,
    )
    factor = settings.correlation.inbound_factor
    if not config.enabled:
        return RuleEngine([], Context(internal, allowlist, limits), inbound_factor=factor)
    ruleset = load_rules([packaged_rules(), *(Path(p) for p in config.paths)])
    return RuleEngine.select(
        ruleset,
        internal=internal,
        allowlist=allowlist,
        limits=limits,
        inbound_factor=factor,
        min_maturity=config.min_maturity,
        disabled=config.disabled,
    )


def site_allowlist(settings: Settings) -> Allowlist:
    """The allowlist named in ``rules.allowlist`` (empty if none).

    Raises:
        ConfigError: the file is missing or invalid.
    """
    name = settings.rules.allowlist
    return load_allowlist(Path(name)) if name else Allowlist()
