"""Index mappings use core field types only (the integration-test distribution has no
mapper-extras or x-pack field types), and follow the Arrow schemas of what is written."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from correlator.es.mapping import mapping_for
from correlator.es.templates import base_component, index_templates
from correlator.schema.event import CORE_SCHEMA
from correlator.schema.finding import FINDING_SCHEMA
from correlator.settings import Settings

CORE_TYPES = {
    "keyword",
    "text",
    "date",
    "ip",
    "long",
    "double",
    "boolean",
    "object",
    "binary",
    "flattened",
    "geo_point",
}


def _types(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        for value in node.values():
            found |= _types(value)
    elif isinstance(node, list):
        for value in node:
            found |= _types(value)
    return found


def test_templates_use_core_types_only(settings: Settings) -> None:
    assert _types(base_component()) <= CORE_TYPES
    for template in index_templates(settings.elasticsearch).values():
        assert _types(template) <= CORE_TYPES
        assert "lifecycle" not in str(template)  # no ILM on the core path


def test_mappings_follow_arrow_types() -> None:
    mapping = mapping_for(FINDING_SCHEMA)
    props = mapping["properties"]
    assert props["@timestamp"] == {"type": "date"}
    assert props["host"]["properties"]["ip"]["type"] == "ip"
    assert props["event"]["properties"]["risk_score"] == {"type": "double"}
    assert props["destination"]["properties"]["port"] == {"type": "long"}
    assert props["threat"]["properties"]["technique"]["properties"]["id"]["type"] == "keyword"
    assert _types(mapping_for(CORE_SCHEMA)) <= CORE_TYPES


def test_nested_structs_become_objects() -> None:
    schema = pa.schema(
        [
            (
                "furui.evidence",
                pa.list_(
                    pa.struct(
                        [
                            ("first_seen", pa.timestamp("us", tz="UTC")),
                            ("score", pa.float64()),
                            ("rule", pa.struct([("name", pa.string())])),
                        ]
                    )
                ),
            )
        ]
    )
    evidence = mapping_for(schema)["properties"]["furui"]["properties"]["evidence"]
    assert evidence["properties"]["first_seen"] == {"type": "date"}
    assert evidence["properties"]["rule"]["properties"]["name"]["type"] == "keyword"
