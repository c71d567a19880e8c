"""Events from Elasticsearch: point-in-time + ``search_after`` in time order, resumable.

Documents are read in ``@timestamp`` order with the point in time's own tiebreaker
(``_shard_doc``), a page at a time. The resume point is the time of the last page's last
document together with the ids already handled at that exact time, so a restart reads
nothing twice and loses nothing. Several workers split one window with a sliced point in
time; on indices Furui shipped, slices follow ``furui.slice_key`` (a hash of the internal
host), so every host's events go to one worker and per-host state stays whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from elasticsearch import ApiError, Elasticsearch, TransportError

from correlator.errors import ServiceError
from correlator.es.client import with_retries
from correlator.es.documents import Page, parse_page
from correlator.es.layouts import Layout, layout_named, recognise, to_events
from correlator.schema.unify import unify

logger = logging.getLogger(__name__)

SLICE_FIELD: Final = "furui.slice_key"
TIME_FIELD: Final = "@timestamp"
_NOT_FOUND: Final = 404


class PointInTimeLostError(ServiceError):
    """The point in time being paged is gone (the server restarted or it expired)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading stands.

    Every document before ``time`` (epoch ms) is handled, and of those at ``time`` exactly
    the ones whose ids are in ``ids``.
    """

    time: int | None = None
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Slice:
    """Which part of the input this worker reads (``index`` of ``count``)."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(slots=True)
class EventPage:
    """One page of events, split by stream, and the checkpoint after it."""

    streams: dict[str, pa.Table] = field(default_factory=dict)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    documents: int = 0


class ElasticsearchSource:
    """Reads Zeek and Suricata documents from indices of any known layout."""

    def __init__(
        self,
        client: Elasticsearch,
        raw_client: Elasticsearch,
        *,
        patterns: Sequence[str],
        layout: str = "auto",
        page_size: int = 5000,
        keep_alive: str = "5m",
        attempts: int = 6,
    ) -> None:
        self._client = client
        self._raw = raw_client
        self._patterns = list(patterns)
        self._forced = None if layout == "auto" else layout_named(layout)
        self._page_size = page_size
        self._keep_alive = keep_alive
        self._attempts = attempts

    def layouts(self) -> dict[str, Layout]:
        """Every existing index the patterns match, with its layout (unknown ones left out)."""
        mappings = with_retries(
            lambda: self._client.indices.get_mapping(
                index=",".join(self._patterns),
                ignore_unavailable=True,
                allow_no_indices=True,
                expand_wildcards="open",
            ),
            what="reading index mappings",
            attempts=self._attempts,
        ).body
        found: dict[str, Layout] = {}
        for index, body in mappings.items():
            layout = self._forced or recognise(index, _field_names(body.get("mappings", {})))
            if layout is None:
                logger.warning("%s: not a layout Furui reads; skipped", index)
                continue
            found[index] = layout
        return found

    def pages(
        self,
        *,
        start: Checkpoint,
        until_ms: int,
        part: Slice = Slice(),
        slice_field: str | None = None,
    ) -> Iterator[EventPage]:
        """Pages of events from ``start`` up to (not including) ``until_ms``.

        Args:
            start: the checkpoint to resume from.
            until_ms: end of the window (epoch ms), normally now minus the lag.
            part: this worker's slice.
            slice_field: numeric field to slice on (keeps an entity on one worker).

        Yields:
            Pages in time order, each with the checkpoint that follows it.
        """
        indices = self.layouts()
        if not indices:
            return
        pit = with_retries(
            lambda: self._client.open_point_in_time(
                index=",".join(sorted(indices)),
                keep_alive=self._keep_alive,
                ignore_unavailable=True,
            ),
            what="opening a point in time",
            attempts=self._attempts,
        ).body["id"]
        checkpoint = start
        after: list[Any] | None = None
        try:
            while True:
                # the query stays the one the point in time was paged with: only
                # search_after moves
                body = self._query(
                    pit,
                    start=start,
                    until_ms=until_ms,
                    after=after,
                    part=part,
                    slice_field=slice_field,
                )
                try:
                    raw = with_retries(
                        partial(self._raw.search, **body),
                        what="reading a page of events",
                        attempts=self._attempts,
                    ).body
                except ServiceError as error:
                    cause = error.__cause__
                    if isinstance(cause, ApiError) and cause.meta.status == _NOT_FOUND:
                        raise PointInTimeLostError(str(error)) from cause
                    raise
                page = parse_page(bytes(raw))
                pit = page.pit_id or pit
                if not page.table.num_rows:
                    return
                after = page.sort
                checkpoint, handled = _advance(page, checkpoint, start)
                yield _split(handled, indices, checkpoint)
        finally:
            try:
                self._client.close_point_in_time(id=pit)
            except (ApiError, TransportError) as error:  # a lost one needs no closing
                logger.debug("closing point in time: %s", error)

    def _query(
        self,
        pit: str,
        *,
        start: Checkpoint,
        until_ms: int,
        after: list[Any] | None,
        part: Slice,
        slice_field: str | None,
    ) -> dict[str, Any]:
        bounds: dict[str, Any] = {"lt": until_ms, "format": "epoch_millis"}
        if start.time is not None:
            bounds["gte"] = start.time
        body: dict[str, Any] = {
            "size": self._page_size,
            "pit": {"id": pit, "keep_alive": self._keep_alive},
            "sort": [{TIME_FIELD: {"order": "asc"}}, {"_shard_doc": "asc"}],
            "query": {"range": {TIME_FIELD: bounds}},
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        if part.count > 1:
            body["slice"] = {"id": part.index, "max": part.count}
            if slice_field:
                body["slice"]["field"] = slice_field
        return body


def _advance(page: Page, current: Checkpoint, start: Checkpoint) -> tuple[Checkpoint, pa.Table]:
    """The checkpoint after ``page``, and the page without documents handled before."""
    table = page.table
    times = pc.cast(page.sort_time, pa.int64()) if page.sort_time is not None else None
    ids = pc.cast(table.column("_id"), pa.string())
    if start.time is not None and start.ids and times is not None:
        seen = pc.and_(pc.equal(times, start.time), pc.is_in(ids, pa.array(start.ids)))
        keep = pc.invert(seen.fill_null(False))
        table, ids, times = table.filter(keep), ids.filter(keep), times.filter(keep)
    if times is None or not len(times):
        return current, table
    last = times[-1].as_py()
    at_last = ids.filter(pc.equal(times, last)).to_pylist()
    carried = current.ids if current.time == last else ()
    return Checkpoint(last, (*carried, *at_last)), table


def _split(table: pa.Table, indices: dict[str, Layout], checkpoint: Checkpoint) -> EventPage:
    page = EventPage(checkpoint=checkpoint, documents=table.num_rows)
    if not table.num_rows:
        return page
    index_names = pc.cast(table.column("_index"), pa.string())
    for index in pc.unique(index_names).to_pylist():
        layout = indices.get(index)
        if layout is None:
            continue
        rows = table.filter(pc.equal(index_names, index))
        for stream, events in to_events(rows, layout):
            known = page.streams.get(stream)
            page.streams[stream] = events if known is None else _joined(known, events)
    return page


def _joined(left: pa.Table, right: pa.Table) -> pa.Table:
    return unify([left, right])


def _field_names(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, spec in mapping.get("properties", {}).items():
        full = f"{prefix}{name}"
        names.add(full)
        names |= _field_names(spec, f"{full}.")
    return names
