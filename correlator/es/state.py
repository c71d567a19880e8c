"""Checkpoints and detector state of Elasticsearch-mode runs, kept in an index.

One document per source and slice holds the reading checkpoint and every detector's state
together, so they always agree: a single-document write is atomic in Elasticsearch.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import Elasticsearch

from correlator.es.client import with_retries
from correlator.sources.elasticsearch import Checkpoint


@dataclass(slots=True)
class RunState:
    """What a worker resumes from."""

    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    detectors: dict[str, bytes] = field(default_factory=dict)
    events: int = 0
    #: hosts with findings not yet correlated into incidents: host -> (first, last) in µs
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)


class StateIndex:
    """Reads and writes run state documents."""

    def __init__(self, client: Elasticsearch, index: str, *, attempts: int) -> None:
        self._client = client
        self._index = index
        self._attempts = attempts

    def load(self, key: str) -> RunState:
        """The saved state of ``key`` (a fresh state if none)."""
        source = self.get(key)
        if source is None:
            return RunState()
        return RunState(
            checkpoint=Checkpoint(source.get("checkpoint"), tuple(source.get("ids", ()))),
            detectors={
                name: base64.b64decode(blob) for name, blob in source.get("detectors", {}).items()
            },
            events=int(source.get("events", 0)),
            pending={
                host: (int(span[0]), int(span[1]))
                for host, span in source.get("pending", {}).items()
            },
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """A state document's source, or ``None``."""
        doc = with_retries(
            lambda: self._client.options(ignore_status=404).get(index=self._index, id=key),
            what=f"reading state {key}",
            attempts=self._attempts,
        ).body
        found: dict[str, Any] | None = doc.get("_source") if doc.get("found") else None
        return found

    def put(self, key: str, document: dict[str, Any]) -> None:
        """Replace a state document."""
        body = {**document, "updated_at": datetime.now(UTC).isoformat()}
        with_retries(
            lambda: self._client.index(index=self._index, id=key, document=body),
            what=f"saving state {key}",
            attempts=self._attempts,
        )

    def save(self, key: str, state: RunState, *, source: str, part: str) -> None:
        """Replace the saved state of ``key`` (one atomic document write)."""
        self.put(
            key,
            {
                "kind": "run",
                "source": source,
                "slice": part,
                "checkpoint": state.checkpoint.time,
                "ids": list(state.checkpoint.ids),
                "detectors": {
                    name: base64.b64encode(blob).decode("ascii")
                    for name, blob in state.detectors.items()
                },
                "events": state.events,
                "pending": {host: list(span) for host, span in state.pending.items()},
            },
        )
