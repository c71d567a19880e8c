"""A finding: one rule or model hit about one internal host, with references to its events.

Findings are the interface between detection and correlation: every detector (Suricata
alerts, Zeek notices, heuristic rules, the model) emits rows of this schema, and the
correlator turns them into incidents without knowing which detector produced them.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from correlator.schema.event import STRINGS, TIMESTAMP

#: Role of the host in the evidence.
ROLE_SOURCE: Final = "source"  # the host did it (sent the alerting traffic, beaconed …)
ROLE_TARGET: Final = "target"  # the host was on the receiving end of an attack

FINDING_SCHEMA: Final = pa.schema(
    [
        pa.field("finding.id", pa.string(), nullable=False),
        pa.field("@timestamp", TIMESTAMP, nullable=False),
        pa.field("host.ip", pa.string(), nullable=False),
        pa.field("furui.role", pa.string(), nullable=False),
        pa.field("furui.peer_ip", pa.string()),
        pa.field("rule.id", pa.string(), nullable=False),
        pa.field("rule.name", pa.string(), nullable=False),
        pa.field("rule.category", pa.string()),
        pa.field("rule.ruleset", pa.string(), nullable=False),
        pa.field("event.risk_score", pa.float64(), nullable=False),
        pa.field("message", pa.string()),  # why it fired, in words
        pa.field("threat.technique.id", STRINGS),
        pa.field("event.id", pa.string(), nullable=False),
        pa.field("event.dataset", pa.string(), nullable=False),
        pa.field("zeek.session_id", pa.string()),
        pa.field("suricata.eve.flow_id", pa.string()),
        pa.field("network.community_id", pa.string()),
        pa.field("source.ip", pa.string()),
        pa.field("destination.ip", pa.string()),
        pa.field("destination.port", pa.int32()),
        # added with the rule engine (issue 4); null where a detector does not fill them
        pa.field("rule.version", pa.string()),
        pa.field("threat.tactic.id", STRINGS),
        pa.field("furui.confidence", pa.float64()),  # 0–1; null means 1
        pa.field("furui.events", pa.int64()),  # events the finding stands for; null means 1
        pa.field("furui.event_ids", STRINGS),  # a bounded sample of them (event.id values)
        pa.field("furui.allowlist", pa.string()),  # the allowlist entry that matched
        pa.field("event.end", TIMESTAMP),  # last event of an aggregated finding
    ]
)
