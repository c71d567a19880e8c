"""Known Zeek log schemas: field types for logs that arrive as JSON."""

from __future__ import annotations

import pyarrow as pa

from correlator.normalise.mapping import load_zeek_types
from correlator.normalise.zeek_types import json_parse_type


def known_types(log_type: str) -> dict[str, str]:
    """Zeek types of the fields of ``log_type`` (empty for an unknown log type)."""
    return dict(load_zeek_types().get(log_type, {}))


def json_schema_for(log_type: str) -> pa.Schema | None:
    """Types to impose when parsing ``log_type`` from JSON, or ``None`` if unknown.

    Time fields are left out: Zeek writes them as epoch numbers or ISO 8601 strings.
    """
    types = known_types(log_type)
    if not types:
        return None
    fields = []
    for name, zeek_type in types.items():
        parse_type = json_parse_type(zeek_type)
        if parse_type is not None:
            fields.append(pa.field(name, parse_type))
    return pa.schema(fields)
