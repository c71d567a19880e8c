"""Findings into incidents: one per internal host and time window, with its explanation.

Pure computation (an in-memory DuckDB over Arrow, no files): the same findings always give
the same incidents, so re-running over more data updates incidents in place. Both the
embedded pipeline and the Elasticsearch mode call ``correlate``.

What an incident holds:

* ``furui.evidence``: one item per rule that fired on the host in the window (identical
  evidence repeated is one item, counted, and scored once), strongest first, each with its
  weight, confidence, score, **contribution** (the risk points it gave), ATT&CK ids and
  references back to the events (Zeek uids, Suricata flow ids, Community IDs, event ids);
* ``event.risk_score``: the peak of the decayed, rank-weighted noisy-OR of the evidence
  (``scoring.decayed_peak``), and ``furui.severity`` its band;
* ``threat.tactic.id``/``threat.technique.id`` and ``furui.kill_chain.stage``, the furthest
  ATT&CK tactic that contributed;
* ``furui.suppressed``: evidence an allowlist entry matched, kept out of the score and
  listed with the entry (id, reason, owner, expiry);
* ``furui.lateral``/``furui.related_incidents``: internal hosts this host attacked or was
  attacked by in the same window that have incidents of their own (lateral spread).

Findings with a risk of 0 are retractions (a verdict a rule took back) and are ignored.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.attack import load_attack
from correlator.schema.finding import FINDING_SCHEMA
from correlator.schema.incident import DATASET, SCHEMA_VERSION, incident_id, severity
from correlator.scoring import decayed_peak

_MICROS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class CorrelationParams:
    """How findings are grouped, scored and explained."""

    window_seconds: int = 86400
    max_references: int = 20
    #: ``name@version`` of the model that scored the run, or ``disabled``; recorded on
    #: every incident as ``furui.model`` (left out when empty: not known to the caller)
    model: str = ""
    #: evidence counts in full this long after its last sighting, then fades …
    hold_seconds: float = 3600.0
    #: … halving every this many seconds (scoring.decayed_peak)
    half_life_seconds: float = 21600.0


_PREPARED: Final = """
SELECT *,
    make_timestamp((epoch_us("@timestamp") // {window_us}) * {window_us}) AS window_start,
    coalesce("event.end", "@timestamp") AS seen_until,
    coalesce("furui.confidence", 1.0) AS conf,
    coalesce("furui.events", 1) AS n_events,
    "event.risk_score" * coalesce("furui.confidence", 1.0) AS effective
FROM findings
WHERE "event.risk_score" > 0
"""

_EVIDENCE_SQL: Final = """
SELECT
    "host.ip" AS host,
    window_start,
    "rule.ruleset" AS ruleset,
    "rule.id" AS rule_id,
    min("rule.name") AS rule_name,
    min("rule.category") AS rule_category,
    max("rule.version") AS rule_version,
    -- ties broken by time and id, so the same findings always give the same explanation
    first("message" ORDER BY effective DESC, "@timestamp", "finding.id") AS message,
    max(effective) AS score,
    first("event.risk_score" ORDER BY effective DESC, "@timestamp", "finding.id") AS weight,
    first(conf ORDER BY effective DESC, "@timestamp", "finding.id") AS confidence,
    sum(n_events)::BIGINT AS count,
    count(DISTINCT "finding.id")::BIGINT AS findings,
    min("@timestamp") AS first_seen,
    max(seen_until) AS last_seen,
    list_sort(list(DISTINCT "furui.role")) AS roles,
    {peers} AS peers,
    {uids} AS uids,
    {flow_ids} AS flow_ids,
    {community_ids} AS community_ids,
    coalesce(list_sort(list_distinct(flatten(list(
        list_concat(["event.id"], coalesce("furui.event_ids", []))))))[1:{limit}], [])
        AS event_ids,
    coalesce(list_sort(list_distinct(flatten(list("threat.technique.id")
        FILTER ("threat.technique.id" IS NOT NULL)))), []) AS techniques,
    coalesce(list_sort(list_distinct(flatten(list("threat.tactic.id")
        FILTER ("threat.tactic.id" IS NOT NULL)))), []) AS tactics
FROM f
WHERE "furui.allowlist" IS NULL
GROUP BY host, window_start, ruleset, rule_id
ORDER BY host, window_start, score DESC, ruleset, rule_id
"""

_SUPPRESSED_SQL: Final = """
SELECT
    "host.ip" AS host,
    window_start,
    {
        'rule': {'id': "rule.id", 'name': min("rule.name"), 'ruleset': "rule.ruleset"},
        'allowlist': "furui.allowlist",
        'count': sum(n_events)::BIGINT,
        'first_seen': min("@timestamp"),
        'last_seen': max(seen_until)
    } AS item
FROM f
WHERE "furui.allowlist" IS NOT NULL
GROUP BY "host.ip", window_start, "rule.ruleset", "rule.id", "furui.allowlist"
ORDER BY "host.ip", window_start, "rule.ruleset", "rule.id", "furui.allowlist"
"""

#: Who attacked whom: a host acting as source against a peer, or a peer against a target.
_EDGES_SQL: Final = """
SELECT DISTINCT
    CASE WHEN "furui.role" = 'target' THEN "furui.peer_ip" ELSE "host.ip" END AS attacker,
    CASE WHEN "furui.role" = 'target' THEN "host.ip" ELSE "furui.peer_ip" END AS victim,
    window_start
FROM f
WHERE "furui.allowlist" IS NULL AND "furui.peer_ip" IS NOT NULL
    AND "furui.peer_ip" <> "host.ip"
"""


def correlate(findings: pa.Table, params: CorrelationParams) -> pa.Table:
    """Group findings into incidents and score them.

    Args:
        findings: rows of ``FINDING_SCHEMA`` (columns it lacks are taken as null).
        params: window length, explanation size and decay.

    Returns:
        One row per incident, with ECS names (``event.id``, ``host.ip``,
        ``event.risk_score`` …) and the explanation in ``furui.evidence``.
    """
    connection = duckdb.connect()
    try:
        connection.register("findings", _complete(findings))
        window_us = params.window_seconds * _MICROS
        connection.execute(
            f"CREATE TEMP TABLE f AS {_PREPARED.format(window_us=window_us)}"
        ).fetchall()
        refs = {
            key: _distinct_refs(column, params.max_references)
            for key, column in (
                ("peers", "furui.peer_ip"),
                ("uids", "zeek.session_id"),
                ("flow_ids", "suricata.eve.flow_id"),
                ("community_ids", "network.community_id"),
            )
        }
        flat = connection.sql(
            _EVIDENCE_SQL.format(limit=params.max_references, **refs)
        ).to_arrow_table()
        suppressed = connection.sql(_SUPPRESSED_SQL).to_arrow_table()
        edges = connection.sql(_EDGES_SQL).to_arrow_table()
    finally:
        connection.close()
    return _incidents(flat, suppressed, edges, params)


def _complete(findings: pa.Table) -> pa.Table:
    """Findings with every column of ``FINDING_SCHEMA`` (older stores lack some)."""
    missing = [f for f in FINDING_SCHEMA if f.name not in findings.column_names]
    for field in missing:
        findings = findings.append_column(field.name, pa.nulls(findings.num_rows, field.type))
    return findings


def _distinct_refs(column: str, limit: int) -> str:
    """SQL for the first ``limit`` distinct non-null values of ``column``, sorted."""
    return (
        f'coalesce(list_sort(list(DISTINCT "{column}") '
        f'FILTER ("{column}" IS NOT NULL))[1:{limit}], [])'
    )


@dataclass(frozen=True, slots=True)
class _Scored:
    """Per evidence row: contribution; per incident: risk, peak time, offsets."""

    offsets: np.ndarray
    risk: np.ndarray
    peak: list[datetime]
    contribution: np.ndarray


def _score(flat: pa.Table, params: CorrelationParams) -> _Scored:
    keys = pc.binary_join_element_wise(
        flat.column("host"), pc.cast(flat.column("window_start"), pa.string()), "|"
    ).combine_chunks()
    n = len(keys)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = np.asarray(
            pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        )
    offsets = np.append(np.flatnonzero(starts), n)
    scores = np.asarray(flat.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
    first = _micros(flat.column("first_seen"))
    last = _micros(flat.column("last_seen"))
    contribution = np.zeros(n)
    risk = np.zeros(len(offsets) - 1)
    peak: list[datetime] = []
    for i, (lo, hi) in enumerate(itertools.pairwise(offsets)):  # per incident, not per finding
        result = decayed_peak(
            scores[lo:hi],
            first[lo:hi],
            last[lo:hi],
            params.half_life_seconds,
            params.hold_seconds,
        )
        risk[i] = result.risk
        contribution[lo:hi] = np.round(result.contributions, 2)
        peak.append(datetime.fromtimestamp(result.at / _MICROS, UTC))
    return _Scored(offsets, risk, peak, contribution)


def _micros(values: pa.ChunkedArray) -> np.ndarray:
    ints = pc.cast(values, pa.timestamp("us")).cast(pa.int64()).fill_null(0)
    return np.asarray(ints.to_numpy(), dtype=np.int64)


def _evidence_items(flat: pa.Table, scored: _Scored) -> pa.ListArray:
    def col(name: str) -> pa.Array:
        return flat.column(name).combine_chunks()

    rule = pa.StructArray.from_arrays(
        [col("rule_id"), col("rule_name"), col("ruleset"), col("rule_category"),
         col("rule_version")],
        names=["id", "name", "ruleset", "category", "version"],
    )  # fmt: skip
    references = pa.StructArray.from_arrays(
        [
            pa.StructArray.from_arrays([col("uids")], names=["session_id"]),
            pa.StructArray.from_arrays(
                [pa.StructArray.from_arrays([col("flow_ids")], names=["flow_id"])], names=["eve"]
            ),
            pa.StructArray.from_arrays([col("community_ids")], names=["community_id"]),
            pa.StructArray.from_arrays([col("event_ids")], names=["id"]),
        ],
        names=["zeek", "suricata", "network", "event"],
    )
    items = pa.StructArray.from_arrays(
        [
            rule, col("message"), col("score"), col("weight"), col("confidence"),
            pa.array(scored.contribution, pa.float64()), col("count"), col("findings"),
            col("first_seen"), col("last_seen"), col("roles"), col("peers"),
            col("techniques"), col("tactics"), references,
        ],
        names=[
            "rule", "message", "score", "weight", "confidence", "contribution", "count",
            "findings", "first_seen", "last_seen", "roles", "peers", "techniques", "tactics",
            "references",
        ],
    )  # fmt: skip
    return pa.ListArray.from_arrays(pa.array(scored.offsets, pa.int32()), items)


def _incidents(
    flat: pa.Table, suppressed: pa.Table, edges: pa.Table, params: CorrelationParams
) -> pa.Table:
    flat = flat.combine_chunks()
    if not flat.num_rows:
        return pa.table({})
    scored = _score(flat, params)
    heads = scored.offsets[:-1]
    take = pa.array(heads)
    hosts = flat.column("host").take(take).to_pylist()
    windows = [_utc(s) for s in flat.column("window_start").take(take).to_pylist()]
    ids = [incident_id(h, s) for h, s in zip(hosts, windows, strict=True)]
    evidence = _evidence_items(flat, scored)
    per_incident = _per_incident(flat, scored)
    lateral = _lateral(edges, hosts, windows)
    hidden = _suppressed(suppressed, hosts, windows)
    severities = [severity(float(r)) for r in scored.risk]
    messages = [
        _message(h, lvl, float(r), name, signals=k, stage=stage)
        for h, lvl, r, name, k, stage in zip(
            hosts, severities, scored.risk, flat.column("rule_name").take(take).to_pylist(),
            np.diff(scored.offsets).tolist(), per_incident["stage"], strict=True,
        )
    ]  # fmt: skip
    window = pa.array(windows, pa.timestamp("us", tz="UTC"))
    window_end = pc.add(window, pa.scalar(params.window_seconds * _MICROS, pa.duration("us")))
    n = len(ids)
    stamp = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        "event.id": pa.array(ids, pa.string()),
        "@timestamp": pa.array(per_incident["first"], stamp),
        "event.start": pa.array(per_incident["first"], stamp),
        "event.end": pa.array(per_incident["last"], stamp),
        "event.kind": pa.repeat(pa.scalar("alert"), n),
        "event.category": pa.repeat(pa.scalar(["intrusion_detection"]), n),
        "event.module": pa.repeat(pa.scalar("furui"), n),
        "event.dataset": pa.repeat(pa.scalar(DATASET), n),
        "event.risk_score": pa.array(scored.risk, pa.float64()),
        "furui.severity": pa.array(severities, pa.string()),
        "host.ip": pa.array(hosts, pa.string()),
        "related.ip": pa.array(per_incident["related"], pa.list_(pa.string())),
        "rule.name": flat.column("rule_name").take(take),
        "message": pa.array(messages, pa.string()),
        "threat.technique.id": pa.array(per_incident["techniques"], pa.list_(pa.string())),
        "threat.tactic.id": pa.array(per_incident["tactics"], pa.list_(pa.string())),
        "furui.kill_chain.stage": pa.array(per_incident["stage"], pa.string()),
        "furui.peak_at": pa.array(scored.peak, stamp),
        "furui.schema_version": pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int32()), n),
        "furui.window.start": window,
        "furui.window.end": window_end,
        "furui.findings": pa.array(per_incident["count"], pa.int64()),
        "furui.evidence": evidence,
        "furui.suppressed": hidden,
        "furui.lateral.targets": pa.array(lateral.targets, pa.list_(pa.string())),
        "furui.lateral.sources": pa.array(lateral.sources, pa.list_(pa.string())),
        "furui.related_incidents": pa.array(lateral.incidents, pa.list_(pa.string())),
    }
    if params.model:
        columns["furui.model"] = pa.repeat(pa.scalar(params.model), n)
    return pa.Table.from_pydict(columns)


def _per_incident(flat: pa.Table, scored: _Scored) -> dict[str, list]:  # type: ignore[type-arg]
    """Times, counts, related addresses and ATT&CK summary of each incident."""
    attack = load_attack()
    out: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    hosts = flat.column("host").to_pylist()
    firsts = flat.column("first_seen").to_pylist()
    lasts = flat.column("last_seen").to_pylist()
    counts = flat.column("count").to_pylist()
    peers = flat.column("peers").to_pylist()
    techniques = flat.column("techniques").to_pylist()
    tactics = flat.column("tactics").to_pylist()
    for lo, hi in zip(scored.offsets[:-1], scored.offsets[1:], strict=True):
        rows = range(lo, hi)
        out["first"].append(min(_utc(firsts[r]) for r in rows))
        out["last"].append(max(_utc(lasts[r]) for r in rows))
        out["count"].append(sum(counts[r] for r in rows))
        out["related"].append(sorted({hosts[lo], *(p for r in rows for p in peers[r] or [])}))
        out["techniques"].append(sorted({t for r in rows for t in techniques[r] or []}))
        out["tactics"].append(sorted({t for r in rows for t in tactics[r] or []}))
        contributing = [t for r in rows if scored.contribution[r] > 0 for t in tactics[r] or []]
        stage = attack.stage(contributing)
        out["stage"].append(stage.shortname if stage is not None else None)
    return out


@dataclass(frozen=True, slots=True)
class _Lateral:
    targets: list[list[str]]
    sources: list[list[str]]
    incidents: list[list[str]]


def _lateral(edges: pa.Table, hosts: list[str], windows: list[datetime]) -> _Lateral:
    """Internal hosts with incidents that each host attacked, or was attacked by."""
    known = {(h, w) for h, w in zip(hosts, windows, strict=True)}
    targets: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    sources: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    for attacker, victim, start in zip(
        edges.column("attacker").to_pylist(),
        edges.column("victim").to_pylist(),
        edges.column("window_start").to_pylist(),
        strict=True,
    ):  # distinct host pairs, not findings
        window = _utc(start)
        if (attacker, window) in known and (victim, window) in known:
            targets[(attacker, window)].add(victim)
            sources[(victim, window)].add(attacker)
    out_t, out_s, out_i = [], [], []
    for key in zip(hosts, windows, strict=True):
        mine_t, mine_s = sorted(targets.get(key, ())), sorted(sources.get(key, ()))
        out_t.append(mine_t)
        out_s.append(mine_s)
        out_i.append(sorted({incident_id(p, key[1]) for p in (*mine_t, *mine_s)}))
    return _Lateral(out_t, out_s, out_i)


def _suppressed(table: pa.Table, hosts: list[str], windows: list[datetime]) -> pa.Array:
    """Allowlisted evidence of each incident (empty list where none)."""
    items: dict[tuple[str, datetime], list[dict[str, object]]] = defaultdict(list)
    for host, start, item in zip(
        table.column("host").to_pylist(),
        table.column("window_start").to_pylist(),
        table.column("item").to_pylist(),
        strict=True,
    ):
        items[(host, _utc(start))].append(item)
    rule = pa.struct([("id", pa.string()), ("name", pa.string()), ("ruleset", pa.string())])
    kind = pa.list_(
        pa.struct(
            [
                ("rule", rule),
                ("allowlist", pa.string()),
                ("count", pa.int64()),
                ("first_seen", pa.timestamp("us", tz="UTC")),
                ("last_seen", pa.timestamp("us", tz="UTC")),
            ]
        )
    )
    return pa.array([items.get(k, []) for k in zip(hosts, windows, strict=True)], kind)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _message(
    host: str, level: str, risk: float, top: str | None, *, signals: int, stage: str | None
) -> str:
    more = f" and {signals - 1} more signal{'s' if signals > 2 else ''}" if signals > 1 else ""  # noqa: PLR2004
    where = f" (stage: {stage})" if stage else ""
    return f"{host}: {level} risk {risk:.0f} - {top}{more}{where}"
