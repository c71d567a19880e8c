"""Benchmark ``furui run`` over Elasticsearch against a bare point-in-time read.

Ships at least one million events replayed from the real logs in ``../shared/datasets``
(``replay.py``) into an Elasticsearch server, then measures, in separate processes pinned
to one core:

* ``furui run`` from scratch over the shipped indices (read, detect, write findings and
  incidents, checkpoint);
* a bare read of the same indices: the official client paging with point in time +
  ``search_after`` in ``@timestamp`` order, parsing every page, doing nothing else.

Prints documents/s of both, their ratio (target: furui at least 0.8 of the bare read) and
each one's peak RSS. The server is the one at ``FURUI_BENCH_ES_URL``, or one started with
``scripts/es.sh`` on port 9202 and stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import analyze
import replay

HERE = Path(__file__).resolve().parent
RUN_DIR = "/var/tmp/furui-es-bench"  # noqa: S108 - es.sh needs a folder outside 0700 homes
REPO = HERE.parent
BARE_READ = textwrap.dedent(
    """
    import sys
    from elasticsearch import Elasticsearch
    client = Elasticsearch(sys.argv[1], request_timeout=120)
    pit = client.open_point_in_time(index=sys.argv[2], keep_alive="5m")["id"]
    after, count = None, 0
    while True:
        body = {"size": 5000, "pit": {"id": pit, "keep_alive": "5m"},
                "sort": [{"@timestamp": "asc"}, {"_shard_doc": "asc"}],
                "track_total_hits": False}
        if after is not None:
            body["search_after"] = after
        page = client.search(**body)
        hits = page["hits"]["hits"]
        if not hits:
            break
        count += len(hits)
        after = hits[-1]["sort"]
        pit = page.get("pit_id", pit)
    client.close_point_in_time(id=pit)
    print(count)
    """
)


def _server(port: int) -> tuple[str, bool]:
    url = os.environ.get("FURUI_BENCH_ES_URL")
    if url:
        return url, False
    env = {
        **os.environ,
        "ES_PORT": str(port),
        "ES_RUN_DIR": RUN_DIR,
        "ES_JAVA_OPTS": "-Xms1g -Xmx1g",
    }
    started = subprocess.run(
        ["bash", str(REPO / "scripts/es.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return started.stdout.strip().splitlines()[-1], True


def _stop(port: int) -> None:
    env = {**os.environ, "ES_PORT": str(port), "ES_RUN_DIR": RUN_DIR}
    subprocess.run(["bash", str(REPO / "scripts/es.sh"), "stop"], env=env, check=False)


def main() -> None:
    """Ship, then time furui run against the bare read; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--port", type=int, default=9202)
    args = parser.parse_args()
    if not replay.SHARED.exists():
        raise SystemExit(f"{replay.SHARED} is missing: the benchmark replays the shared datasets")
    url, started = _server(args.port)
    try:
        folder, events = analyze.prepare(args.workdir, args.events)
        prefix = f"bench{int(time.time())}"
        env = {
            **os.environ,
            "FURUI_ELASTICSEARCH__URLS": json.dumps([url]),
            "FURUI_ELASTICSEARCH__REPLICAS": "0",
            "FURUI_ELASTICSEARCH__EVENTS_PREFIX": f"{prefix}-events",
            "FURUI_ELASTICSEARCH__FINDINGS_INDEX": f"{prefix}-findings",
            "FURUI_ELASTICSEARCH__INCIDENTS_INDEX": f"{prefix}-incidents",
            "FURUI_ELASTICSEARCH__STATE_INDEX": f"{prefix}-state",
            "FURUI_ELASTICSEARCH__SOURCE_INDICES": json.dumps([f"{prefix}-events-*"]),
            "FURUI_ELASTICSEARCH__LAG_SECONDS": "0",
        }
        shipped = analyze.measure(
            [sys.executable, "-m", "correlator", "ship", str(folder), "--json"], env
        )
        ship_summary = json.loads(shipped.stdout)
        assert ship_summary["written"] == events, ship_summary
        bare = analyze.measure([sys.executable, "-c", BARE_READ, url, f"{prefix}-events-*"], env)
        bare_docs = int(bare.stdout.strip())
        run = analyze.measure([sys.executable, "-m", "correlator", "run", "--json"], env)
        run_summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert run_summary["documents"] == bare_docs == events, (run_summary, bare_docs)
        print(
            "| events | ship s | ship events/s | furui run s | run docs/s | run peak RSS | "
            "bare read s | bare docs/s | bare peak RSS | run/bare speed | incidents |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {events:,} | {shipped.seconds:.1f} | {events / shipped.seconds:,.0f} | "
            f"{run.seconds:.1f} | {events / run.seconds:,.0f} | {run.peak_rss_mb:,.0f} MB | "
            f"{bare.seconds:.1f} | {events / bare.seconds:,.0f} | {bare.peak_rss_mb:,.0f} MB | "
            f"{bare.seconds / run.seconds:.2f} | {run_summary['incidents_updated']} |"
        )
    finally:
        if started:
            _stop(args.port)


if __name__ == "__main__":
    main()
