"""The Elasticsearch mode assembled from settings: what ``furui ship``/``run`` and tests call."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from elasticsearch import Elasticsearch

from correlator.correlate import CorrelationParams
from correlator.engine.base import Detector
from correlator.es import templates
from correlator.es.client import connect, wait_ready
from correlator.es.run import CycleReport, RunTarget, run_cycle
from correlator.es.ship import ShipReport, ship
from correlator.es.state import StateIndex
from correlator.ml.detector import ml_provenance
from correlator.normalise import NormaliseContext
from correlator.normalise.addresses import Networks
from correlator.pipeline import Progress, build_detectors
from correlator.settings import Settings
from correlator.sinks.elasticsearch import ElasticsearchSink
from correlator.sources.elasticsearch import ElasticsearchSource, Slice
from correlator.sources.reader import ReadLimits

#: Events per bulk batch when shipping: large enough for throughput, small enough for memory.
SHIP_FLUSH_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class Cluster:
    """Clients and stores of one Elasticsearch cluster, ready to use."""

    client: Elasticsearch
    raw: Elasticsearch
    sink: ElasticsearchSink
    states: StateIndex


def open_cluster(settings: Settings, *, wait: float) -> Cluster:
    """Connect, wait until the cluster is ready, and install Furui's templates.

    Raises:
        ServiceError: the cluster did not become ready in ``wait`` seconds.
    """
    es = settings.elasticsearch
    client = connect(es)
    wait_ready(client, es, wait=wait)
    templates.install(client, es)
    raw = connect(es, raw=True)
    return Cluster(
        client=client,
        raw=raw,
        sink=ElasticsearchSink(client, raw, es),
        states=StateIndex(client, es.state_index, attempts=es.max_retries + 1),
    )


def context(settings: Settings) -> NormaliseContext:
    """Normalisation context from settings."""
    return NormaliseContext(
        internal=Networks.of(list(settings.network.internal)),
        trust_zeek_local=settings.network.trust_zeek_local,
        community_id_seed=settings.network.community_id_seed,
    )


def ship_paths(
    cluster: Cluster, settings: Settings, paths: list[Path], *, progress: Progress | None = None
) -> ShipReport:
    """``furui ship``: normalise and index every log under ``paths``."""
    return ship(
        paths,
        sink=cluster.sink,
        states=cluster.states,
        context=context(settings),
        limits=ReadLimits(settings.ingest.block_bytes, settings.ingest.max_line_bytes),
        prefix=settings.elasticsearch.events_prefix,
        flush_rows=min(settings.ingest.flush_rows, SHIP_FLUSH_ROWS),
        progress=progress,
    )


def source_name(settings: Settings) -> str:
    """A stable name for the input ``furui run`` reads, from its index patterns and layout."""
    es = settings.elasticsearch
    key = "|".join([*sorted(es.source_indices), es.layout])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def run_once(
    cluster: Cluster,
    settings: Settings,
    *,
    until: datetime,
    name: str | None = None,
    part: Slice | None = None,
    since: datetime | None = None,
    detectors: list[Detector] | None = None,
) -> CycleReport:
    """One ``furui run`` cycle: everything new up to ``until``."""
    es = settings.elasticsearch
    source = ElasticsearchSource(
        cluster.client,
        cluster.raw,
        patterns=es.source_indices,
        layout=es.layout,
        page_size=es.page_size,
        attempts=es.max_retries + 1,
    )
    return run_cycle(
        source=source,
        sink=cluster.sink,
        states=cluster.states,
        detectors=detectors if detectors is not None else build_detectors(settings),
        target=RunTarget(name or source_name(settings), part or Slice(), since),
        params=CorrelationParams(
            window_seconds=settings.correlation.window_seconds,
            max_references=settings.correlation.max_references,
            model=ml_provenance(settings),
        ),
        until=until,
        checkpoint_seconds=es.checkpoint_seconds,
    )
