"""Findings and incidents in Elasticsearch, and bulk writing with per-document errors.

Every document has a deterministic ``_id`` (the finding id, the incident id), so re-runs
update instead of duplicating. Incidents are upserted with a partial-document update, so
the ``furui.status`` an analyst set survives every later update of the incident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from elasticsearch import Elasticsearch

from correlator.errors import SinkError
from correlator.es.client import with_retries
from correlator.es.documents import bulk_lines, joined, parse_page
from correlator.es.mapping import mapping_for
from correlator.schema.finding import FINDING_SCHEMA
from correlator.schema.unify import unify
from correlator.settings import ElasticsearchSettings

logger = logging.getLogger(__name__)

STATUS: Final = "furui.status"


@dataclass(slots=True)
class BulkResult:
    """Outcome of bulk writes: documents written and the ones refused, with the reason."""

    written: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (_id, reason)


class ElasticsearchSink:
    """Writes findings and incidents, and reads findings back for correlation."""

    def __init__(
        self, client: Elasticsearch, raw: Elasticsearch, settings: ElasticsearchSettings
    ) -> None:
        self._client = client
        self._raw = raw
        self._settings = settings
        self._attempts = settings.max_retries + 1
        self._mapped: dict[str, set[str]] = {}

    @property
    def findings_index(self) -> str:
        """Where findings are stored."""
        return self._settings.findings_index

    # -- writing ----------------------------------------------------------------------

    def ensure_mapping(self, index: str, schema: pa.Schema) -> None:
        """Create ``index`` if missing and map the fields of ``schema`` it lacks."""
        known = self._mapped.setdefault(index, set())
        missing = [f for f in schema if f.name not in known and not pa.types.is_null(f.type)]
        if not missing:
            return
        mapping = mapping_for(pa.schema(missing))
        exists = with_retries(
            lambda: self._client.indices.exists(index=index),
            what=f"checking index {index}",
            attempts=self._attempts,
        )
        if not exists:
            with_retries(
                lambda: self._client.options(ignore_status=400).indices.create(
                    index=index, mappings=mapping
                ),
                what=f"creating index {index}",
                attempts=self._attempts,
            )
        if not self._put_mapping(index, mapping):
            # a field the index maps otherwise (another writer, a manual mapping): map the
            # others one by one; documents that contradict the index are refused and reported
            for spec in missing:
                if not self._put_mapping(index, mapping_for(pa.schema([spec]))):
                    logger.warning(
                        "%s: field %s is mapped otherwise in the index", index, spec.name
                    )
        known.update(f.name for f in missing)

    def _put_mapping(self, index: str, mapping: dict[str, Any]) -> bool:
        response = with_retries(
            partial(
                self._client.options(ignore_status=400).indices.put_mapping, index=index, **mapping
            ),
            what=f"mapping fields of {index}",
            attempts=self._attempts,
        )
        return response.meta.status < 400  # noqa: PLR2004 - HTTP success

    def write(self, table: pa.Table, *, index: str, id_field: str) -> BulkResult:
        """Index every row of ``table`` into ``index`` with ``_id`` from ``id_field``."""
        self.ensure_mapping(index, table.schema)
        lines = bulk_lines(table, index=index, id_field=id_field, mode="index")
        return self._send(lines)

    def write_findings(self, findings: pa.Table) -> BulkResult:
        """Store findings (a finding seen again replaces the earlier one)."""
        if not findings.num_rows:
            return BulkResult()
        return self.write(findings, index=self._settings.findings_index, id_field="finding.id")

    def upsert_incidents(self, incidents: pa.Table) -> BulkResult:
        """Insert or update incidents, keeping each one's analyst status."""
        if not incidents.num_rows:
            return BulkResult()
        index = self._settings.incidents_index
        self.ensure_mapping(index, incidents.schema.append(pa.field(STATUS, pa.string())))
        lines = bulk_lines(incidents, index=index, id_field="event.id", mode="upsert")
        result = self._send(lines)
        if result.errors:
            raise SinkError(
                f"{index}: {len(result.errors)} incidents refused, first: "
                f"{result.errors[0][0]}: {result.errors[0][1]}"
            )
        return result

    def refresh(self, index: str) -> None:
        """Make recent writes to ``index`` searchable."""
        with_retries(
            lambda: self._client.indices.refresh(index=index),
            what=f"refreshing {index}",
            attempts=self._attempts,
        )

    # -- reading ----------------------------------------------------------------------

    def findings_for(self, hosts: Iterable[str], start: datetime, end: datetime) -> pa.Table:
        """Every stored finding on ``hosts`` with ``start <= @timestamp < end``."""
        hosts = sorted(set(hosts))
        index = self._settings.findings_index
        exists = with_retries(
            lambda: self._client.indices.exists(index=index),
            what=f"checking index {index}",
            attempts=self._attempts,
        )
        if not hosts or not exists:
            return FINDING_SCHEMA.empty_table()
        tables: list[pa.Table] = []
        for chunk in range(0, len(hosts), 1000):
            query = {
                "bool": {
                    "filter": [
                        {"terms": {"host.ip": hosts[chunk : chunk + 1000]}},
                        {
                            "range": {
                                "@timestamp": {"gte": start.isoformat(), "lt": end.isoformat()}
                            }
                        },
                    ]
                }
            }
            tables.extend(self._scan(index, query))
        return _as_findings(tables)

    def _scan(self, index: str, query: dict[str, Any]) -> list[pa.Table]:
        pit = with_retries(
            lambda: self._client.open_point_in_time(index=index, keep_alive="2m"),
            what=f"opening a point in time on {index}",
            attempts=self._attempts,
        ).body["id"]
        tables: list[pa.Table] = []
        after: list[Any] | None = None
        try:
            while True:
                body: dict[str, Any] = {
                    "size": self._settings.page_size,
                    "query": query,
                    "pit": {"id": pit, "keep_alive": "2m"},
                    "sort": [{"_shard_doc": "asc"}],
                    "track_total_hits": False,
                }
                if after is not None:
                    body["search_after"] = after
                raw = with_retries(
                    partial(self._raw.search, **body),
                    what=f"reading {index}",
                    attempts=self._attempts,
                ).body
                page = parse_page(bytes(raw))
                pit = page.pit_id or pit
                if not page.table.num_rows:
                    return tables
                tables.append(page.table)
                after = page.sort
        finally:
            self._client.options(ignore_status=404).close_point_in_time(id=pit)

    def _send(self, lines: pa.Array) -> BulkResult:
        result = BulkResult()
        per = self._settings.bulk_size
        for start in range(0, len(lines), per):
            body = joined(lines.slice(start, per))
            # a ready NDJSON body: the client sends str/bytes bodies as they are
            send = partial(self._client.bulk, body=body)  # type: ignore[arg-type]
            response = with_retries(
                send,
                what="writing documents",
                attempts=self._attempts,
            ).body
            items = response.get("items", [])
            failed = [_failure(item) for item in items] if response.get("errors") else []
            refused = [f for f in failed if f is not None]
            result.errors.extend(refused)
            result.written += len(items) - len(refused)
        for doc_id, reason in result.errors[:5]:
            logger.warning("document %s refused: %s", doc_id, reason)
        return result


def _failure(item: dict[str, Any]) -> tuple[str, str] | None:
    outcome = next(iter(item.values()))
    error = outcome.get("error")
    if not error:
        return None
    reason = f"{error.get('type')}: {error.get('reason')}"
    return str(outcome.get("_id")), reason


def _as_findings(tables: list[pa.Table]) -> pa.Table:
    """Findings read back, with the types of ``FINDING_SCHEMA``."""
    if not tables:
        return FINDING_SCHEMA.empty_table()
    table = unify(tables)
    arrays = []
    for spec in FINDING_SCHEMA:
        if spec.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, spec.type))
            continue
        values = table.column(spec.name).combine_chunks()
        if values.type != spec.type:
            values = pc.cast(values, spec.type)
        arrays.append(values)
    return pa.Table.from_arrays(arrays, schema=FINDING_SCHEMA)
