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
    ]
)
