"""Helpers for tests and notebooks: read and normalise files in memory, no store involved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa

from correlator.normalise import NormaliseContext, normalise
from correlator.normalise.addresses import Networks
from correlator.schema.unify import unify
from correlator.sources.base import Reject
from correlator.sources.files import discover
from correlator.sources.reader import Position, ReadLimits, read_log

#: RFC 1918 and RFC 4193, the default internal networks.
DEFAULT_INTERNAL: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


@dataclass(slots=True)
class Loaded:
    """Normalised events per stream, and everything rejected on the way."""

    streams: dict[str, pa.Table] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)

    def stream(self, name: str) -> pa.Table:
        """The events of one stream (``zeek.connection``, ``suricata.eve.alert`` …)."""
        return self.streams[name]


def default_context(internal: Sequence[str] = DEFAULT_INTERNAL) -> NormaliseContext:
    """A normalisation context with the default internal networks."""
    return NormaliseContext(internal=Networks.of(list(internal)))


def load_events(
    *paths: Path,
    context: NormaliseContext | None = None,
    limits: ReadLimits | None = None,
) -> Loaded:
    """Read and normalise every log under ``paths`` into memory.

    Args:
        paths: files or directories.
        context: normalisation context (default networks if omitted).
        limits: read limits (small blocks exercise block boundaries in tests).

    Returns:
        The events per stream and the rejects.
    """
    context = context or default_context()
    limits = limits or ReadLimits()
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    loaded = Loaded()
    for log in discover(list(paths)).logs:
        for block in read_log(log, Position(), limits):
            loaded.rejects.extend(block.rejects)
            for raw in block.batches:
                for result in normalise(raw, context):
                    loaded.rejects.extend(result.rejects)
                    if result.events.num_rows:
                        parts[result.stream].append(result.events)
    for stream, tables in parts.items():
        loaded.streams[stream] = unify(tables)
    return loaded
