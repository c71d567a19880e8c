"""The incident: all findings about one internal host in one time window, explained.

Incidents are written as ECS documents (``event.kind: alert``) with Furui's own fields
under ``furui.*``. The id is a hash of host and window, so re-running over the same or more
data updates an incident instead of adding a new one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

SCHEMA_VERSION: Final = 1
DATASET: Final = "furui.incident"

#: Severity bands of ``event.risk_score`` (as Elastic's detection rules use them).
SEVERITY_BANDS: Final = (("low", 0.0), ("medium", 22.0), ("high", 48.0), ("critical", 74.0))


def incident_id(host_ip: str, window_start: datetime) -> str:
    """Deterministic incident id from the host and the start of its window."""
    key = f"furui-incident|v{SCHEMA_VERSION}|{host_ip}|{window_start.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def severity(score: float) -> str:
    """The severity band of a 0–100 risk score."""
    name = SEVERITY_BANDS[0][0]
    for band, floor in SEVERITY_BANDS:
        if score >= floor:
            name = band
    return name
