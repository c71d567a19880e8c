"""Documents as Elastic Agent, Filebeat and Security Onion store them are read as events.

The Elastic Agent documents are Elastic's own samples (tests/data/ecs). Filebeat and
Security Onion documents are derived from them by changing only the fields that tell the
layouts apart (``data_stream`` removed, ``fileset.name`` added; ``event.dataset`` renamed to
Security Onion's short names and ``log.id.uid`` added), as no real ones are available.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from correlator.es.service import open_cluster, run_once
from correlator.settings import Settings
from tests.conftest import REPO
from tests.integration.test_es_pipeline import es_settings

ECS = REPO / "tests" / "data" / "ecs"


def _notice() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ECS / "zeek/notice/sample_event.json").read_text())
    return doc


def _alert() -> dict[str, Any]:
    docs = json.loads((ECS / "suricata/eve/test-eve-metadata.log-expected.json").read_text())
    doc: dict[str, Any] = docs["expected"][0]
    return doc


def _filebeat(doc: dict[str, Any], fileset: str) -> dict[str, Any]:
    derived = copy.deepcopy(doc)
    derived.pop("data_stream", None)
    derived["fileset"] = {"name": fileset}
    return derived


def _security_onion(doc: dict[str, Any], dataset: str) -> dict[str, Any]:
    derived = _filebeat(doc, dataset)
    derived.pop("fileset")
    derived["event"]["dataset"] = dataset
    derived["log"] = {"id": {"uid": "CqKst53mF3det3eDV9"}}
    return derived


def _index(client: Elasticsearch, index: str, docs: list[dict[str, Any]]) -> list[str]:
    client.indices.create(index=index, settings={"number_of_replicas": 0})
    ids = []
    for number, doc in enumerate(docs):
        ids.append(f"{index}-{number}")
        client.index(index=index, id=ids[-1], document=doc)
    client.indices.refresh(index=index)
    return ids


@pytest.mark.parametrize(
    ("layout", "docs"),
    [
        ("elastic-agent", [_notice(), _alert()]),
        ("filebeat", [_filebeat(_notice(), "notice"), _filebeat(_alert(), "eve")]),
        (
            "security-onion",
            [_security_onion(_notice(), "notice"), _security_onion(_alert(), "alert")],
        ),
    ],
)
def test_layout_documents_become_findings_and_incidents(
    settings: Settings, es_url: str, index_prefix: str, layout: str, docs: list[dict[str, Any]]
) -> None:
    # the samples' addresses are public: declare the notice's target internal for this test
    network = settings.network.model_copy(
        update={"internal": (*settings.network.internal, "207.154.238.0/24")}
    )
    configured = es_settings(
        settings.model_copy(update={"network": network}),
        es_url,
        index_prefix,
        source_indices=(f"{index_prefix}-src-*",),
    )
    cluster = open_cluster(configured, wait=60)
    ids = _index(cluster.client, f"{index_prefix}-src-{layout}", docs)
    assert cluster_layouts(cluster, configured) == {f"{index_prefix}-src-{layout}": layout}
    report = run_once(cluster, configured, until=datetime.now(UTC))
    assert report.documents == len(docs)
    index = configured.elasticsearch.incidents_index
    cluster.client.indices.refresh(index=index)
    incidents = [h["_source"] for h in cluster.client.search(index=index)["hits"]["hits"]]
    by_host = {i["host"]["ip"]: i for i in incidents}
    notice, alert = docs[0], docs[1]
    scanned = by_host[notice["destination"]["ip"]]
    assert _rules(scanned) >= {notice["rule"]["name"]}
    assert ids[0] in _event_ids(scanned)
    attacker = by_host[alert["destination"]["ip"]]  # the response came from the victim
    assert _rules(attacker) >= {alert["rule"]["name"]}
    assert ids[1] in _event_ids(attacker)


def cluster_layouts(cluster: Any, configured: Settings) -> dict[str, str]:
    from correlator.sources.elasticsearch import ElasticsearchSource

    source = ElasticsearchSource(
        cluster.client, cluster.raw, patterns=configured.elasticsearch.source_indices
    )
    return {index: layout.name for index, layout in source.layouts().items()}


def _rules(incident: dict[str, Any]) -> set[str]:
    return {e["rule"]["name"] for e in incident["furui"]["evidence"]}


def _event_ids(incident: dict[str, Any]) -> set[str]:
    return {i for e in incident["furui"]["evidence"] for i in e["references"]["event"]["id"]}
