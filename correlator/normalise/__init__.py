"""Raw log records into normalised ECS events: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterator

from correlator.normalise.core import NormaliseContext, Normalised
from correlator.normalise.suricata import normalise_eve
from correlator.normalise.zeek import normalise_zeek
from correlator.sources.base import LogFormat, RawBatch

__all__ = ["NormaliseContext", "Normalised", "normalise"]


def normalise(batch: RawBatch, context: NormaliseContext) -> Iterator[Normalised]:
    """Normalise one raw batch into events, one ``Normalised`` per dataset it holds.

    Args:
        batch: parsed records from one file.
        context: site knowledge needed to normalise.

    Yields:
        Events per dataset, each with the records that failed.
    """
    if batch.format is LogFormat.SURICATA_EVE:
        yield from normalise_eve(batch, context)
    else:
        yield normalise_zeek(batch, context)
