"""Kibana saved objects for Furui's indices: data views, saved searches, a dashboard.

``data/kibana/furui.ndjson`` holds them for the default index names; :func:`saved_objects`
renames the data views' index patterns after the configured names, so ``furui kibana
export`` writes a file that imports into Kibana (Stack Management → Saved Objects →
Import, or ``POST /api/saved_objects/_import``) for this installation.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

from correlator.settings import ElasticsearchSettings

#: Data view id → the setting that names its indices.
_DATA_VIEWS: Final = {
    "furui-incidents": lambda es: f"{es.incidents_index}*",
    "furui-findings": lambda es: f"{es.findings_index}*",
    "furui-events": lambda es: f"{es.events_prefix}-*",
}


def packaged() -> list[dict[str, Any]]:
    """The saved objects as shipped, one dict per object."""
    text = resources.files("correlator.data").joinpath("kibana", "furui.ndjson").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def saved_objects(settings: ElasticsearchSettings) -> list[dict[str, Any]]:
    """The saved objects with data views pointed at the configured index names."""
    objects = packaged()
    for obj in objects:
        title = _DATA_VIEWS.get(obj["id"]) if obj["type"] == "index-pattern" else None
        if title is not None:
            obj["attributes"]["title"] = title(settings)
    return objects


def ndjson(objects: list[dict[str, Any]]) -> str:
    """Objects as Kibana's import format: one JSON object per line."""
    return "".join(json.dumps(obj, separators=(",", ":")) + "\n" for obj in objects)


def fields_used(objects: list[dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Per data view id, the fields saved searches show, sort or filter on.

    The flag says whether the field must be aggregatable (sorted on).
    """
    used: dict[str, dict[str, bool]] = {}
    for obj in objects:
        if obj["type"] != "search":
            continue
        view = next(r["id"] for r in obj["references"] if r["type"] == "index-pattern")
        fields = used.setdefault(view, {})
        for column in obj["attributes"]["columns"]:
            fields.setdefault(column, False)
        for column, _direction in obj["attributes"]["sort"]:
            fields[column] = True
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        for token in source["query"]["query"].split():
            if token and token[0].isalpha() and "." in token:
                fields.setdefault(token, True)
    return used
