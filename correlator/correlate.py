"""Findings into incidents: one per internal host and time window, with its explanation.

Pure computation (an in-memory DuckDB over Arrow, no files): the same findings always give
the same incidents, so re-running over more data updates incidents in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.schema.incident import DATASET, SCHEMA_VERSION, incident_id, severity
from correlator.scoring import combine_groups

_MICROS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class CorrelationParams:
    """How findings are grouped and explained."""

    window_seconds: int = 86400
    max_references: int = 20


_EVIDENCE_SQL: Final = """
WITH f AS (
    SELECT *,
        make_timestamp(
            (epoch_us("@timestamp") // {window_us}) * {window_us}
        ) AS window_start
    FROM findings
),
evidence AS (
    SELECT
        "host.ip" AS host,
        window_start,
        "rule.ruleset" AS ruleset,
        "rule.id" AS rule_id,
        min("rule.name") AS rule_name,
        min("rule.category") AS rule_category,
        arg_max("message", "event.risk_score") AS message,
        max("event.risk_score") AS score,
        count(DISTINCT "finding.id") AS count,
        min("@timestamp") AS first_seen,
        max("@timestamp") AS last_seen,
        list_sort(list(DISTINCT "furui.role")) AS roles,
        {peers} AS peers,
        {uids} AS uids,
        {flow_ids} AS flow_ids,
        {community_ids} AS community_ids,
        {event_ids} AS event_ids,
        coalesce(list_distinct(flatten(list("threat.technique.id")
            FILTER ("threat.technique.id" IS NOT NULL))), []) AS techniques
    FROM f
    GROUP BY ALL
)
SELECT
    host,
    window_start,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sum(count) AS findings,
    list(score ORDER BY score DESC, ruleset, rule_id) AS scores,
    list_sort(list_distinct(flatten(list(peers)))) AS peers,
    list_sort(list_distinct(flatten(list(techniques)))) AS techniques,
    list({{
        'rule': {{'id': rule_id, 'name': rule_name, 'ruleset': ruleset, 'category': rule_category}},
        'message': message,
        'score': score,
        'count': count,
        'first_seen': first_seen,
        'last_seen': last_seen,
        'roles': roles,
        'peers': peers,
        'references': {{
            'zeek': {{'session_id': uids}},
            'suricata': {{'eve': {{'flow_id': flow_ids}}}},
            'network': {{'community_id': community_ids}},
            'event': {{'id': event_ids}}
        }}
    }} ORDER BY score DESC, ruleset, rule_id) AS evidence
FROM evidence
GROUP BY host, window_start
ORDER BY host, window_start
"""


def correlate(findings: pa.Table, params: CorrelationParams) -> pa.Table:
    """Group findings into incidents and score them.

    Args:
        findings: rows of ``FINDING_SCHEMA``.
        params: window length and explanation size.

    Returns:
        One row per incident, with ECS names (``event.id``, ``host.ip``,
        ``event.risk_score`` …) and the explanation in ``furui.evidence``.
    """
    connection = duckdb.connect()
    try:
        connection.register("findings", findings)
        refs = {
            key: _distinct_refs(column, params.max_references)
            for key, column in (
                ("peers", "furui.peer_ip"),
                ("uids", "zeek.session_id"),
                ("flow_ids", "suricata.eve.flow_id"),
                ("community_ids", "network.community_id"),
                ("event_ids", "event.id"),
            )
        }
        sql = _EVIDENCE_SQL.format(window_us=params.window_seconds * _MICROS, **refs)
        grouped = connection.sql(sql).to_arrow_table()
    finally:
        connection.close()
    return _finish(grouped, params)


def _distinct_refs(column: str, limit: int) -> str:
    """SQL for the first ``limit`` distinct non-null values of ``column``, sorted."""
    return (
        f'coalesce(list_sort(list(DISTINCT "{column}") '
        f'FILTER ("{column}" IS NOT NULL))[1:{limit}], [])'
    )


def _finish(grouped: pa.Table, params: CorrelationParams) -> pa.Table:
    n = grouped.num_rows
    if not n:
        return pa.table({})
    scores = grouped.column("scores").combine_chunks()
    offsets = scores.offsets.to_numpy()[:-1].astype(np.int64)
    risk = combine_groups(scores.flatten().to_numpy(zero_copy_only=False), offsets)
    hosts = grouped.column("host").to_pylist()
    starts = grouped.column("window_start").to_pylist()
    window_starts = [_utc(s) for s in starts]
    ids = [incident_id(h, s) for h, s in zip(hosts, window_starts, strict=True)]
    severities = [severity(float(r)) for r in risk]
    evidence = grouped.column("evidence").combine_chunks()
    top_names = pc.struct_field(pc.list_element(evidence, 0), ["rule", "name"])
    related = [
        sorted({h, *(p or [])})
        for h, p in zip(hosts, grouped.column("peers").to_pylist(), strict=True)
    ]
    messages = [
        _message(h, s, float(r), name, int(k))
        for h, s, r, name, k in zip(
            hosts,
            severities,
            risk,
            top_names.to_pylist(),
            pc.list_value_length(evidence).to_pylist(),
            strict=True,
        )
    ]
    window = pa.array([s.replace(tzinfo=UTC) for s in window_starts], pa.timestamp("us", tz="UTC"))
    window_end = pc.add(window, pa.scalar(params.window_seconds * _MICROS, pa.duration("us")))
    columns = {
        "event.id": pa.array(ids, pa.string()),
        "@timestamp": pc.cast(grouped.column("first_seen"), pa.timestamp("us", tz="UTC")),
        "event.start": pc.cast(grouped.column("first_seen"), pa.timestamp("us", tz="UTC")),
        "event.end": pc.cast(grouped.column("last_seen"), pa.timestamp("us", tz="UTC")),
        "event.kind": pa.repeat(pa.scalar("alert"), n),
        "event.category": pa.repeat(pa.scalar(["intrusion_detection"]), n),
        "event.module": pa.repeat(pa.scalar("furui"), n),
        "event.dataset": pa.repeat(pa.scalar(DATASET), n),
        "event.risk_score": pa.array(risk, pa.float64()),
        "furui.severity": pa.array(severities, pa.string()),
        "host.ip": grouped.column("host"),
        "related.ip": pa.array(related, pa.list_(pa.string())),
        "rule.name": top_names,
        "message": pa.array(messages, pa.string()),
        "threat.technique.id": grouped.column("techniques"),
        "furui.schema_version": pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int32()), n),
        "furui.window.start": window,
        "furui.window.end": window_end,
        "furui.findings": pc.cast(grouped.column("findings"), pa.int64()),
        "furui.evidence": evidence,
    }
    return pa.Table.from_pydict(columns)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _message(host: str, level: str, risk: float, top: str | None, signals: int) -> str:
    more = f" and {signals - 1} more signal{'s' if signals > 2 else ''}" if signals > 1 else ""  # noqa: PLR2004
    return f"{host}: {level} risk {risk:.0f} - {top}{more}"
