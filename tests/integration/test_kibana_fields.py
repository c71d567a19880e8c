"""Kibana's data views against the real indices: every field the saved searches use exists
in ``_field_caps`` (which Kibana builds data views from) with the right capabilities."""

from __future__ import annotations

from datetime import UTC, datetime

from correlator.es.service import open_cluster, run_once, ship_paths
from correlator.kibana import fields_used, saved_objects
from correlator.settings import Settings
from tests.integration.test_es_pipeline import PARITY, es_settings


def test_saved_searches_use_fields_the_indices_have(
    settings: Settings, es_url: str, index_prefix: str
) -> None:
    configured = es_settings(settings, es_url, index_prefix)
    cluster = open_cluster(configured, wait=60)
    ship_paths(cluster, configured, PARITY)
    run_once(cluster, configured, until=datetime.now(UTC))
    objects = saved_objects(configured.elasticsearch)
    titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    for view, fields in fields_used(objects).items():
        caps = cluster.client.field_caps(index=titles[view], fields="*")
        assert caps["indices"], f"{titles[view]} matches no index"
        assert "date" in caps["fields"]["@timestamp"]
        for name, bucketed in fields.items():
            assert name in caps["fields"], f"{view}: {name} is not a field"
            kinds = caps["fields"][name]
            assert len(kinds) == 1, f"{view}: {name} has conflicting types {list(kinds)}"
            if bucketed:
                assert next(iter(kinds.values()))["aggregatable"], f"{view}: {name}"


def test_incident_fields_have_their_types(
    settings: Settings, es_url: str, index_prefix: str
) -> None:
    configured = es_settings(settings, es_url, index_prefix)
    cluster = open_cluster(configured, wait=60)
    ship_paths(cluster, configured, PARITY)
    run_once(cluster, configured, until=datetime.now(UTC))
    caps = cluster.client.field_caps(index=configured.elasticsearch.incidents_index, fields="*")
    expected = {
        "@timestamp": "date",
        "event.risk_score": "double",
        "host.ip": "ip",
        "related.ip": "ip",
        "furui.severity": "keyword",
        "furui.status": "keyword",
        "furui.evidence.first_seen": "date",
        "furui.evidence.score": "double",
        "furui.evidence.rule.name": "keyword",
        "furui.window.start": "date",
    }
    for name, kind in expected.items():
        assert set(caps["fields"][name]) == {kind}, (name, caps["fields"][name])
