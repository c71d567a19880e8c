"""Types of the ECS fields Furui fills, where they are not plain keywords.

Sensors disagree on types (an eve ``http.status`` may be ``200`` or ``"200"``); ECS fields
are cast to these types during normalisation, so every stream agrees on them. A value that
cannot be cast makes its record a reject, never a silently wrong field.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from correlator.schema.event import TIMESTAMP

_LONG: Final = pa.int64()

ECS_TYPES: Final[dict[str, pa.DataType]] = {
    "source.bytes": _LONG,
    "source.packets": _LONG,
    "destination.bytes": _LONG,
    "destination.packets": _LONG,
    "network.bytes": _LONG,
    "network.packets": _LONG,
    "event.duration": _LONG,
    "event.severity": _LONG,
    "event.start": TIMESTAMP,
    "event.end": TIMESTAMP,
    "http.response.status_code": _LONG,
    "http.request.body.bytes": _LONG,
    "http.response.body.bytes": _LONG,
    "url.port": _LONG,
    "file.size": _LONG,
    "file.x509.public_key_size": _LONG,
    "file.x509.not_before": TIMESTAMP,
    "file.x509.not_after": TIMESTAMP,
    "tls.server.not_before": TIMESTAMP,
    "tls.server.not_after": TIMESTAMP,
    "tls.established": pa.bool_(),
    "tls.resumed": pa.bool_(),
    "dns.id": pa.string(),
    "rule.id": pa.string(),
    "network.vlan.id": pa.string(),
    "network.inner.vlan.id": pa.string(),
}
