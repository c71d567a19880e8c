"""The Elasticsearch mode on the real server: ship, run, parity with the embedded store,
idempotence, analyst status, slices, refused documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from correlator.es.service import Cluster, open_cluster, run_once, ship_paths
from correlator.settings import Settings
from correlator.sources.elasticsearch import Slice
from correlator.state import Store
from tests.conftest import REPO, Runner

EXAMPLES = REPO / "examples" / "wrccdc-2018"
# real alerts and notices, small enough to ship in a second: the parity set
PARITY = [
    EXAMPLES / "suricata" / "eve.json",
    EXAMPLES / "zeek" / "notice.log.gz",
    EXAMPLES / "zeek" / "rdp.log.gz",
]


def es_settings(settings: Settings, url: str, prefix: str, **extra: Any) -> Settings:
    """Settings pointing every Furui index at ``prefix`` on the test server."""
    es = settings.elasticsearch.model_copy(
        update={
            "urls": (url,),
            "replicas": 0,
            "events_prefix": f"{prefix}-events",
            "findings_index": f"{prefix}-findings",
            "incidents_index": f"{prefix}-incidents",
            "state_index": f"{prefix}-state",
            "checkpoint_seconds": 0,
            "source_indices": (f"{prefix}-events-*",),
            "lag_seconds": 0,
            **extra,
        }
    )
    return settings.model_copy(update={"elasticsearch": es})


def run_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a ``furui`` subprocess use ``settings``' Elasticsearch."""
    es = settings.elasticsearch
    return {
        **os.environ,
        "FURUI_ELASTICSEARCH__URLS": json.dumps(list(es.urls)),
        "FURUI_ELASTICSEARCH__REPLICAS": "0",
        "FURUI_ELASTICSEARCH__EVENTS_PREFIX": es.events_prefix,
        "FURUI_ELASTICSEARCH__FINDINGS_INDEX": es.findings_index,
        "FURUI_ELASTICSEARCH__INCIDENTS_INDEX": es.incidents_index,
        "FURUI_ELASTICSEARCH__STATE_INDEX": es.state_index,
        "FURUI_ELASTICSEARCH__SOURCE_INDICES": json.dumps(list(es.source_indices)),
        "FURUI_ELASTICSEARCH__LAG_SECONDS": "0",
        "FURUI_ELASTICSEARCH__CHECKPOINT_SECONDS": "0",  # save every page: kill tests see them
        **extra,
    }


@pytest.fixture
def configured(settings: Settings, es_url: str, index_prefix: str) -> Settings:
    return es_settings(settings, es_url, index_prefix)


@pytest.fixture
def cluster(configured: Settings) -> Cluster:
    return open_cluster(configured, wait=60)


def _incidents(client: Elasticsearch, settings: Settings) -> dict[str, dict[str, Any]]:
    index = settings.elasticsearch.incidents_index
    client.indices.refresh(index=index)
    hits = client.search(index=index, size=10_000)["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def _count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def _now() -> datetime:
    return datetime.now(UTC)


def test_embedded_and_elasticsearch_give_the_same_incidents(
    cluster: Cluster, configured: Settings, run: Runner
) -> None:
    embedded = run(PARITY).incidents.to_pylist()
    shipped = ship_paths(cluster, configured, PARITY)
    assert shipped.written == shipped.events > 4000
    assert not shipped.refused
    cycle = run_once(cluster, configured, until=_now())
    assert cycle.documents == shipped.events
    remote = _incidents(cluster.client, configured)
    assert embedded
    assert {i["event.id"] for i in embedded} == set(remote)
    for incident in embedded:
        mine = remote[incident["event.id"]]
        assert mine["host"]["ip"] == incident["host.ip"]
        assert mine["event"]["risk_score"] == pytest.approx(incident["event.risk_score"])
        assert mine["furui"]["severity"] == incident["furui.severity"]
        assert len(mine["furui"]["evidence"]) == len(incident["furui.evidence"])
        assert mine["furui"]["status"] == "open"


def test_shipped_documents_use_elastic_agent_field_names(
    cluster: Cluster, configured: Settings, tmp_path: Path
) -> None:
    sample = json.loads((REPO / "tests/data/ecs/zeek/connection/sample_event.json").read_text())
    log = tmp_path / "conn.log"
    log.write_text(sample["event"]["original"] + "\n")
    ship_paths(cluster, configured, [log])
    index = f"{configured.elasticsearch.events_prefix}-zeek.connection"
    cluster.client.indices.refresh(index=index)
    doc = cluster.client.search(index=index)["hits"]["hits"][0]["_source"]
    for path in (
        "source.ip",
        "source.port",
        "destination.ip",
        "destination.port",
        "source.bytes",
        "destination.bytes",
        "network.transport",
        "network.protocol",
        "network.community_id",
        "event.dataset",
        "event.duration",
        "zeek.connection.state",
        "zeek.connection.history",
        "zeek.session_id",
    ):
        assert _get(doc, path) == _get(sample, path), path
    mapping = cluster.client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["source"]["properties"]["ip"]["type"] == "ip"
    assert mapping["properties"]["@timestamp"]["type"] == "date"


def test_shipping_and_running_again_add_nothing(cluster: Cluster, configured: Settings) -> None:
    es = configured.elasticsearch
    ship_paths(cluster, configured, PARITY)
    run_once(cluster, configured, until=_now())
    events = _count(cluster.client, f"{es.events_prefix}-*")
    findings = _count(cluster.client, es.findings_index)
    before = _incidents(cluster.client, configured)
    again = ship_paths(cluster, configured, PARITY)
    assert again.events == 0  # every file is past its checkpoint
    second = run_once(cluster, configured, until=_now())
    assert second.documents == 0
    assert _count(cluster.client, f"{es.events_prefix}-*") == events
    assert _count(cluster.client, es.findings_index) == findings
    assert _incidents(cluster.client, configured) == before


def test_analyst_status_survives_later_updates(
    cluster: Cluster, configured: Settings, tmp_path: Path
) -> None:
    alerts = (EXAMPLES / "suricata" / "eve.json").read_text().splitlines()
    first, rest = tmp_path / "a" / "eve.json", tmp_path / "b" / "eve.json"
    first.parent.mkdir()
    rest.parent.mkdir()
    first.write_text("\n".join(alerts[:100]) + "\n")
    rest.write_text("\n".join(alerts[100:]) + "\n")
    ship_paths(cluster, configured, [first])
    run_once(cluster, configured, until=_now())
    incidents = _incidents(cluster.client, configured)
    chosen = max(incidents, key=lambda i: incidents[i]["furui"]["findings"])
    index = configured.elasticsearch.incidents_index
    cluster.client.update(
        index=index, id=chosen, doc={"furui": {"status": "acknowledged"}}, refresh="wait_for"
    )
    ship_paths(cluster, configured, [rest])
    run_once(cluster, configured, until=_now())
    after = _incidents(cluster.client, configured)
    assert after[chosen]["furui"]["status"] == "acknowledged"
    assert len(after) >= len(incidents)
    assert {i["furui"]["status"] for k, i in after.items() if k != chosen} == {"open"}


def test_two_slices_find_what_one_worker_finds(
    cluster: Cluster, configured: Settings, run: Runner, settings: Settings
) -> None:
    ship_paths(cluster, configured, PARITY)
    halves = [run_once(cluster, configured, until=_now(), part=Slice(i, 2)) for i in (0, 1)]
    assert sum(h.documents for h in halves) == sum(1 for _ in _all_ids(cluster, configured))
    assert all(h.documents > 0 for h in halves)
    run(PARITY)
    with Store.open(settings.store.path) as store:
        embedded = set(store.findings().column("finding.id").to_pylist())
    index = configured.elasticsearch.findings_index
    cluster.client.indices.refresh(index=index)
    remote = {
        h["_id"]
        for h in cluster.client.search(index=index, size=10_000, source=False)["hits"]["hits"]
    }
    assert remote == embedded


def test_refused_documents_are_reported_with_file_and_line(
    cluster: Cluster, configured: Settings
) -> None:
    index = f"{configured.elasticsearch.events_prefix}-zeek.notice"
    # a mapping that contradicts what Zeek logs (note is text): Elasticsearch refuses them
    cluster.client.indices.create(
        index=index,
        mappings={
            "properties": {
                "zeek": {"properties": {"notice": {"properties": {"note": {"type": "long"}}}}}
            }
        },
        settings={"number_of_replicas": 0},
    )
    notice = EXAMPLES / "zeek" / "notice.log.gz"
    report = ship_paths(cluster, configured, [notice])
    assert report.events == 207
    assert len(report.refused) == 207
    where, reason = report.refused[0]
    path, line = where.rsplit(":", 1)
    assert path == str(notice)
    assert int(line) >= 9  # after the 8 header lines
    assert "mapper_parsing_exception" in reason or "document_parsing_exception" in reason


def test_killed_run_resumes_to_the_clean_result(configured: Settings) -> None:
    cluster = open_cluster(configured, wait=60)
    ship_paths(cluster, configured, PARITY)
    env = run_env(configured, FURUI_ELASTICSEARCH__PAGE_SIZE="200")
    command = [sys.executable, "-m", "correlator", "run", "--json"]
    victim = subprocess.Popen(
        [*command, "--name", "killed", "-vv"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert victim.stderr is not None
    pages = 0
    for line in victim.stderr:
        pages += "checkpoint" in line
        if pages == 5:
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    resumed = subprocess.run(
        [*command, "--name", "killed"], env=env, check=True, capture_output=True, text=True
    )
    report = json.loads(resumed.stdout)
    total = sum(1 for _ in _all_ids(cluster, configured))
    assert 0 < report["documents"] < total  # it continued, it did not start over
    killed_incidents = _incidents(cluster.client, configured)
    # a clean run of the same input, under another name, must agree exactly
    clean = subprocess.run(
        [*command, "--name", "clean"], env=env, check=True, capture_output=True, text=True
    )
    assert json.loads(clean.stdout)["documents"] == total
    assert _incidents(cluster.client, configured) == killed_incidents


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "correlator", "run", "--es", "http://127.0.0.1:9", "--wait", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 5
    errors = [line for line in result.stderr.splitlines() if line.startswith("furui: error")]
    assert len(errors) == 1
    assert "http://127.0.0.1:9" in errors[0]
    assert "not ready" in errors[0]
    assert "retrying" in result.stderr  # it tried again before giving up


def _all_ids(cluster: Cluster, settings: Settings) -> Any:
    index = f"{settings.elasticsearch.events_prefix}-*"
    cluster.client.indices.refresh(index=index)
    pit = cluster.client.open_point_in_time(index=index, keep_alive="1m")["id"]
    after = None
    while True:
        body: dict[str, Any] = {
            "size": 5000,
            "pit": {"id": pit, "keep_alive": "1m"},
            "sort": [{"_shard_doc": "asc"}],
            "source": False,
        }
        if after:
            body["search_after"] = after
        hits = cluster.client.search(**body)["hits"]["hits"]
        if not hits:
            return
        yield from (h["_id"] for h in hits)
        after = hits[-1]["sort"]


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_orjson_available() -> None:  # the fast serialiser the client is given
    assert orjson.dumps({"a": 1}) == b'{"a":1}'


def test_follow_polls_and_reports_the_lag(configured: Settings, cluster: Cluster) -> None:
    ship_paths(cluster, configured, [EXAMPLES / "zeek" / "notice.log.gz"])
    env = run_env(configured, FURUI_ELASTICSEARCH__POLL_SECONDS="1")
    done = subprocess.run(
        [sys.executable, "-m", "correlator", "run", "--follow", "--cycles", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    cycles = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(cycles) == 2
    assert cycles[0]["documents"] == 207
    assert cycles[1]["documents"] == 0  # the second poll finds nothing new
    for cycle in cycles:  # the notices are from 2018: years behind real time
        assert cycle["lag_seconds"] > 365 * 24 * 3600


def test_credentials_never_reach_logs_or_errors(tmp_path: Path) -> None:
    secret = "c2VjcmV0LWtleS0xMjM0NTY3ODk="  # noqa: S105 - a made-up key that must not be echoed
    env = {
        **os.environ,
        "FURUI_ELASTICSEARCH__API_KEY": secret,
        "FURUI_ELASTICSEARCH__URLS": '["http://127.0.0.1:9"]',
    }
    failed = subprocess.run(
        [sys.executable, "-m", "correlator", "run", "--wait", "2", "-vv"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert failed.returncode == 5
    shown = subprocess.run(
        [sys.executable, "-m", "correlator", "settings", "show", "--json"],
        env={**env, "FURUI_ELASTICSEARCH__USERNAME": "", "FURUI_ELASTICSEARCH__PASSWORD": ""},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert json.loads(shown.stdout)["elasticsearch"]["api_key"] == "**********"
    for output in (failed.stdout, failed.stderr, shown.stdout, shown.stderr):
        assert secret not in output
    user_env = {
        **os.environ,
        "FURUI_ELASTICSEARCH__USERNAME": "analyst",
        "FURUI_ELASTICSEARCH__PASSWORD": "hunter2-not-logged",
        "FURUI_ELASTICSEARCH__URLS": '["http://analyst:hunter2-not-logged@127.0.0.1:9"]',
    }
    basic = subprocess.run(
        [sys.executable, "-m", "correlator", "run", "--wait", "2", "-vv"],
        env=user_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert basic.returncode == 5
    assert "hunter2-not-logged" not in basic.stdout + basic.stderr
    assert "127.0.0.1:9" in basic.stderr  # the server is named, its password is not
