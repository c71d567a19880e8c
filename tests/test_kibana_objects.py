"""The Kibana saved objects are well formed and refer only to objects that exist."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from correlator.kibana import ndjson, packaged, saved_objects
from correlator.settings import Settings

OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "id", "attributes"],
    "properties": {
        "type": {"enum": ["index-pattern", "search", "dashboard", "visualization", "lens"]},
        "id": {"type": "string", "minLength": 1},
        "attributes": {"type": "object", "required": ["title"]},
        "references": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "id", "name"],
                "properties": {
                    "type": {"type": "string"},
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                },
            },
        },
    },
}
# attributes Kibana stores as JSON text, not as objects
JSON_STRINGS = ("panelsJSON", "optionsJSON", "fieldFormatMap", "fields", "runtimeFieldMap")


def test_each_line_is_a_valid_saved_object() -> None:
    objects = packaged()
    assert {o["type"] for o in objects} >= {"index-pattern", "search", "dashboard"}
    for obj in objects:
        jsonschema.validate(obj, OBJECT_SCHEMA)
        for name in JSON_STRINGS:
            if name in obj["attributes"]:
                json.loads(obj["attributes"][name])
        meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
        if "searchSourceJSON" in meta:
            json.loads(meta["searchSourceJSON"])
        if obj["type"] == "index-pattern":
            assert obj["attributes"]["timeFieldName"] == "@timestamp"


def test_ids_are_unique_and_references_resolve() -> None:
    objects = packaged()
    known = {(o["type"], o["id"]) for o in objects}
    assert len(known) == len(objects)
    for obj in objects:
        names = {ref["name"] for ref in obj.get("references", [])}
        for ref in obj.get("references", []):
            assert (ref["type"], ref["id"]) in known, ref
        meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
        source = json.loads(meta.get("searchSourceJSON", "{}"))
        if "indexRefName" in source:
            assert source["indexRefName"] in names
        for panel in json.loads(obj["attributes"].get("panelsJSON", "[]")):
            assert panel["panelRefName"] in names


def test_data_views_follow_the_configured_index_names(settings: Settings) -> None:
    es = settings.elasticsearch.model_copy(
        update={"incidents_index": "soc-incidents", "events_prefix": "soc-events"}
    )
    titles = {
        o["id"]: o["attributes"]["title"] for o in saved_objects(es) if o["type"] == "index-pattern"
    }
    assert titles["furui-incidents"] == "soc-incidents*"
    assert titles["furui-events"] == "soc-events-*"
    again = [json.loads(line) for line in ndjson(saved_objects(es)).splitlines()]
    assert again == saved_objects(es)
