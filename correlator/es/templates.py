"""Index and component templates for the indices Furui writes.

One component template (``data/elasticsearch/furui-base.json``: ECS basics, keyword strings,
no date guessing) is shared by four index templates: shipped events, findings, incidents
and state. Field mappings beyond the basics come from Arrow schemas (``es.mapping``) and
are put on each index before the first write.
"""

from __future__ import annotations

import json
from functools import partial
from importlib import resources
from typing import Any, Final

from elasticsearch import Elasticsearch

from correlator.es.client import with_retries
from correlator.settings import ElasticsearchSettings

COMPONENT: Final = "furui-base"
_PRIORITY: Final = 500  # above Elastic's built-in logs-*-* (100) and metrics templates


def base_component() -> dict[str, Any]:
    """The shared component template, as shipped in the package."""
    text = resources.files("correlator.data").joinpath("elasticsearch", "furui-base.json")
    loaded: dict[str, Any] = json.loads(text.read_text("utf-8"))
    return loaded


def index_templates(settings: ElasticsearchSettings) -> dict[str, dict[str, Any]]:
    """Index templates by name, for the configured index names."""
    shared = {"index": {"number_of_replicas": settings.replicas}}
    state_mapping = {
        "dynamic": False,
        "properties": {
            "kind": {"type": "keyword"},
            "source": {"type": "keyword"},
            "slice": {"type": "keyword"},
            "checkpoint": {"type": "date"},
            "state": {"type": "binary"},
            "updated_at": {"type": "date"},
            "events": {"type": "long"},
        },
    }
    # templates are named after the indices they shape, so two Furui installations with
    # different index names (or parallel tests) never overwrite each other's
    state = {"index_patterns": [settings.state_index], "template": {"mappings": state_mapping}}
    templates: dict[str, dict[str, Any]] = {
        settings.events_prefix: {"index_patterns": [f"{settings.events_prefix}-*"]},
        settings.findings_index: {"index_patterns": [settings.findings_index]},
        settings.incidents_index: {"index_patterns": [settings.incidents_index]},
        settings.state_index: state,
    }
    for body in templates.values():
        body.setdefault("template", {}).setdefault("settings", {}).update(shared)
        body["composed_of"] = [] if body is state else [COMPONENT]
        body["priority"] = _PRIORITY
        body["_meta"] = {"managed_by": "furui"}
    return templates


def install(client: Elasticsearch, settings: ElasticsearchSettings) -> None:
    """Create or update Furui's templates (idempotent)."""
    with_retries(
        lambda: client.cluster.put_component_template(name=COMPONENT, **base_component()),
        what=f"installing component template {COMPONENT}",
        attempts=settings.max_retries + 1,
    )
    for name, body in index_templates(settings).items():
        with_retries(
            partial(client.indices.put_index_template, name=name, **body),
            what=f"installing index template {name}",
            attempts=settings.max_retries + 1,
        )
