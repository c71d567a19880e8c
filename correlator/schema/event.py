"""The normalised event: ECS field names and their Arrow types.

Every normalised batch holds the core columns below, in this order and with these types,
followed by the dataset's own columns (``zeek.<dataset>.*``, ``suricata.eve.*`` and the ECS
fields its mapping table fills, such as ``dns.question.name``). Column names are flat dotted
ECS names, as Elasticsearch accepts them in documents.

Where Furui differs from the Elastic Agent integrations: ``event.id`` is Furui's own
deterministic id of the log record (file fingerprint and line), unique per event, because
Zeek's ``uid`` (kept in ``zeek.session_id`` as Elastic does) is shared by every record of a
connection.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
STRINGS: Final = pa.list_(pa.string())

#: Core columns of every normalised event, in order.
CORE_FIELDS: Final[tuple[pa.Field, ...]] = (
    pa.field("event.id", pa.string(), nullable=False),
    pa.field("@timestamp", TIMESTAMP),
    pa.field("event.module", pa.string(), nullable=False),
    pa.field("event.dataset", pa.string(), nullable=False),
    pa.field("event.kind", pa.string()),
    pa.field("event.category", STRINGS),
    pa.field("event.type", STRINGS),
    pa.field("source.ip", pa.string()),
    pa.field("source.port", pa.int32()),
    pa.field("destination.ip", pa.string()),
    pa.field("destination.port", pa.int32()),
    pa.field("network.transport", pa.string()),
    pa.field("network.protocol", pa.string()),
    pa.field("network.community_id", pa.string()),
    pa.field("network.direction", pa.string()),
    pa.field("related.ip", STRINGS),
    pa.field("zeek.session_id", pa.string()),
    pa.field("suricata.eve.flow_id", pa.string()),
    pa.field("log.file.path", pa.string()),
    pa.field("log.offset", pa.int64()),
    pa.field("furui.line", pa.int64()),
)

CORE_SCHEMA: Final = pa.schema(CORE_FIELDS)
CORE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in CORE_FIELDS)

#: ``network.direction`` values (ECS), from the internal/external status of both ends.
DIRECTION_INTERNAL: Final = "internal"
DIRECTION_OUTBOUND: Final = "outbound"
DIRECTION_INBOUND: Final = "inbound"
DIRECTION_EXTERNAL: Final = "external"
DIRECTION_UNKNOWN: Final = "unknown"
