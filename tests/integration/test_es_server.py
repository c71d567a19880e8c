"""The server capabilities Furui relies on, checked against the real Elasticsearch server.

These pin down the integ-test server's behaviour that the correlator's Elasticsearch source and
sink depend on (docs/elasticsearch.md): composable templates with core field types, bulk with
``refresh=wait_for``, point-in-time paging with ``search_after``, composite aggregations and
``_field_caps``. Each test works in its own ``index_prefix``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from elasticsearch import BadRequestError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0}
MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"id": {"type": "keyword"}, "kind": {"type": "keyword"}}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
        "network": {"properties": {"bytes": {"type": "long"}}},
        "message": {"type": "text"},
        "labels": {"type": "flattened"},
    },
}


def iso(moment: datetime) -> str:
    """Formats an aware datetime as the ISO 8601 string the documents carry."""
    return moment.isoformat().replace("+00:00", "Z")


def put_event_template(client: Elasticsearch, prefix: str) -> str:
    """Creates the events index template of this test and returns its index pattern."""
    pattern = f"{prefix}-events-*"
    client.indices.put_index_template(
        name=f"{prefix}-events",
        index_patterns=[pattern],
        priority=500,
        template={"settings": SETTINGS, "mappings": MAPPINGS},
    )
    return pattern


def event(n: int, *, at: datetime, host: str = "10.0.0.1", kind: str = "alert") -> dict[str, Any]:
    """Builds one event document; ``n`` makes its id and byte count unique."""
    return {
        "@timestamp": iso(at),
        "event": {"id": f"e{n:04d}", "kind": kind},
        "source": {"ip": host},
        "destination": {"ip": "192.0.2.10", "port": 443},
        "network": {"bytes": 1000 + n},
        "message": f"event number {n}",
        "labels": {"sensor": "zeek", "rule": {"id": f"r{n % 3}"}},
    }


def bulk_index(client: Elasticsearch, index: str, docs: list[dict[str, Any]]) -> None:
    """Indexes ``docs`` in one bulk request that returns once they are searchable."""
    operations: list[dict[str, Any]] = []
    for doc in docs:
        operations.extend(({"create": {"_index": index, "_id": doc["event"]["id"]}}, doc))
    response = client.bulk(operations=operations, refresh="wait_for")
    failed = [item for item in response["items"] if item["create"].get("error")]
    assert not response["errors"], failed[:3]
    assert len(response["items"]) == len(docs)


def test_index_template_applies_core_field_types(
    es_client: Elasticsearch, index_prefix: str
) -> None:
    """A composable template maps keyword, date, ip, long and flattened, and enforces them."""
    put_event_template(es_client, index_prefix)
    index = f"{index_prefix}-events-000001"
    es_client.index(index=index, document=event(1, at=T0), refresh="wait_for")

    properties = es_client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date"
    assert properties["source"]["properties"]["ip"]["type"] == "ip"
    assert properties["event"]["properties"]["kind"]["type"] == "keyword"
    assert properties["network"]["properties"]["bytes"]["type"] == "long"
    assert properties["labels"]["type"] == "flattened"
    settings = es_client.indices.get_settings(index=index)[index]["settings"]["index"]
    assert settings["number_of_replicas"] == "0"

    # The types are enforced, not just recorded: a bad IP is refused, and so is an unmapped field.
    with pytest.raises(BadRequestError, match=r"(mapper|document)_parsing_exception"):
        es_client.index(index=index, document={**event(2, at=T0), "source": {"ip": "not-an-ip"}})
    with pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"):
        es_client.index(index=index, document={**event(3, at=T0), "unexpected": 1})

    # A flattened field answers term queries on its nested keys.
    hits = es_client.search(index=index, query={"term": {"labels.rule.id": "r1"}})["hits"]
    assert hits["total"]["value"] == 1


def test_bulk_with_refresh_wait_for_is_searchable_at_once(
    es_client: Elasticsearch, index_prefix: str
) -> None:
    """Bulk with refresh=wait_for returns only once every document can be found."""
    put_event_template(es_client, index_prefix)
    index = f"{index_prefix}-events-000001"
    docs = [event(n, at=T0 + timedelta(seconds=n)) for n in range(50)]
    bulk_index(es_client, index, docs)

    # No explicit refresh: refresh=wait_for must already have made every document visible.
    assert es_client.count(index=index)["count"] == len(docs)
    # `create` with an existing id is a conflict, which is how the sink stays idempotent.
    response = es_client.bulk(
        operations=[{"create": {"_index": index, "_id": "e0007"}}, docs[7]], refresh="wait_for"
    )
    assert response["errors"]
    assert response["items"][0]["create"]["status"] == 409


def test_point_in_time_pages_in_timestamp_order(
    es_client: Elasticsearch, index_prefix: str
) -> None:
    """PIT + search_after visits each document once, in @timestamp order, from a snapshot."""
    put_event_template(es_client, index_prefix)
    # Two indices and many equal timestamps, so that only the tiebreaker keeps pages disjoint.
    docs = [event(n, at=T0 + timedelta(minutes=n // 4)) for n in range(37)]
    bulk_index(es_client, f"{index_prefix}-events-000001", docs[::2])
    bulk_index(es_client, f"{index_prefix}-events-000002", docs[1::2])
    pattern = f"{index_prefix}-events-*"

    pit_id = es_client.open_point_in_time(index=pattern, keep_alive="1m")["id"]
    try:
        # Written after the PIT opened, so a PIT search must not see it.
        bulk_index(es_client, f"{index_prefix}-events-000001", [event(999, at=T0)])
        seen: list[tuple[str, str]] = []
        search_after: list[Any] | None = None
        pages = 0
        while True:
            response = es_client.search(
                pit={"id": pit_id, "keep_alive": "1m"},
                size=5,
                sort=[{"@timestamp": {"order": "asc"}}, {"_shard_doc": {"order": "asc"}}],
                search_after=search_after,
                source_includes=["@timestamp", "event.id"],
                track_total_hits=False,
            )
            pit_id = response["pit_id"]
            hits = response["hits"]["hits"]
            if not hits:
                break
            pages += 1
            seen.extend((h["_source"]["@timestamp"], h["_source"]["event"]["id"]) for h in hits)
            search_after = hits[-1]["sort"]
    finally:
        es_client.close_point_in_time(id=pit_id)

    ids = [doc_id for _, doc_id in seen]
    assert sorted(ids) == sorted(doc["event"]["id"] for doc in docs)  # each once, e0999 absent
    timestamps = [ts for ts, _ in seen]
    assert timestamps == sorted(timestamps)
    assert pages == 8  # ceil(37 / 5)


def test_composite_aggregation_pages_through_all_buckets(
    es_client: Elasticsearch, index_prefix: str
) -> None:
    """A composite aggregation pages through every (source, hour) bucket exactly once."""
    put_event_template(es_client, index_prefix)
    hosts = [f"10.0.0.{n}" for n in range(1, 8)]
    times = [T0 + timedelta(minutes=25 * n) for n in range(30)]
    docs = [event(n, at=at, host=hosts[n % len(hosts)]) for n, at in enumerate(times)]
    bulk_index(es_client, f"{index_prefix}-events-000001", docs)
    expected = Counter(
        (hosts[n % len(hosts)], int(at.replace(minute=0).timestamp() * 1000))
        for n, at in enumerate(times)
    )

    buckets: Counter[tuple[str, int]] = Counter()
    after: dict[str, Any] | None = None
    pages = 0
    while True:
        composite: dict[str, Any] = {
            "size": 4,
            "sources": [
                {"src": {"terms": {"field": "source.ip"}}},
                {"hour": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}}},
            ],
        }
        if after is not None:
            composite["after"] = after
        response = es_client.search(
            index=f"{index_prefix}-events-*", size=0, aggs={"by": {"composite": composite}}
        )
        agg = response["aggregations"]["by"]
        if not agg["buckets"]:
            break
        pages += 1
        for bucket in agg["buckets"]:
            key = (bucket["key"]["src"], bucket["key"]["hour"])
            assert key not in buckets, f"bucket {key} returned twice"
            buckets[key] = bucket["doc_count"]
        after = agg["after_key"]

    assert buckets == expected
    assert sum(buckets.values()) == len(docs)
    assert pages == -(-len(expected) // 4)


def test_field_caps_reports_types_and_aggregatability(
    es_client: Elasticsearch, index_prefix: str
) -> None:
    """_field_caps gives each field's type and aggregatability, and type conflicts."""
    put_event_template(es_client, index_prefix)
    bulk_index(es_client, f"{index_prefix}-events-000001", [event(1, at=T0)])
    # A second family maps `event.kind` differently: field caps must report the conflict.
    es_client.indices.create(
        index=f"{index_prefix}-other",
        settings=SETTINGS,
        mappings={"properties": {"event": {"properties": {"kind": {"type": "long"}}}}},
    )

    caps = es_client.field_caps(index=f"{index_prefix}-events-*", fields="*")
    fields = caps["fields"]
    assert caps["indices"] == [f"{index_prefix}-events-000001"]
    assert fields["@timestamp"]["date"]["aggregatable"] is True
    assert fields["source.ip"]["ip"]["aggregatable"] is True
    assert fields["event.kind"]["keyword"]["aggregatable"] is True
    assert fields["network.bytes"]["long"]["searchable"] is True
    assert fields["labels"]["flattened"]["aggregatable"] is True
    assert fields["message"]["text"]["aggregatable"] is False

    both = es_client.field_caps(index=f"{index_prefix}-*", fields="event.kind")["fields"]
    assert set(both["event.kind"]) == {"keyword", "long"}
    assert both["event.kind"]["keyword"]["indices"] == [f"{index_prefix}-events-000001"]


def test_server_is_a_supported_elasticsearch(es_client: Elasticsearch) -> None:
    """The server passes the client's product check and is 8.19+ or 9.x."""
    # The client's product check has passed by now (X-Elastic-Product); the version must be one
    # the project supports with an 8.x client: 8.19 or any 9.x through REST compatibility.
    nodes = es_client.nodes.info(node_id="_local", filter_path="nodes.*.version")["nodes"]
    (version,) = {node["version"] for node in nodes.values()}
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (8, 19), version
    assert major in {8, 9}, version
