"""Which internal host a piece of evidence is about, and how much it weighs there.

An alert or notice names two ends. The attacker is normally the source of the alerting
traffic; a few signatures fire on the victim's response instead. Evidence counts for each
internal end: fully for an internal attacker (the host misbehaves, e.g. malware spreading),
for a host attacked from inside, and for a host that fetched the attack itself as a client
(an exploit document downloaded from a web server); scaled by ``inbound_factor`` for a host
attacked unsolicited from the Internet, because being attacked is not being compromised.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.base import Attributed
from correlator.normalise.addresses import Networks, parse
from correlator.schema.finding import ROLE_SOURCE, ROLE_TARGET

#: Ports below this are services; a host talking from above it to one is the client.
_EPHEMERAL: Final = 1024


def attribute(
    events: pa.Table,
    scores: npt.NDArray[np.float64],
    victim_is_source: npt.NDArray[np.bool_],
    *,
    internal: Networks,
    inbound_factor: float,
) -> Attributed:
    """Attribute each scored event to its internal end(s).

    Args:
        events: normalised events with ``source.ip`` and ``destination.ip``.
        scores: risk score per event; 0 means no finding.
        victim_is_source: per event, the alerting packet came from the victim.
        internal: the site's internal networks.
        inbound_factor: weight of evidence on a host attacked from outside.

    Returns:
        One row per (event, internal host) pair with a positive score.
    """
    n = events.num_rows
    source = _column(events, "source.ip", n)
    destination = _column(events, "destination.ip", n)
    src_in = internal.contains(parse(source))
    dst_in = internal.contains(parse(destination))
    attacker = pc.if_else(pa.array(victim_is_source), destination, source)
    victim = pc.if_else(pa.array(victim_is_source), source, destination)
    attacker_in = np.where(victim_is_source, dst_in, src_in)
    victim_in = np.where(victim_is_source, src_in, dst_in)
    sport, dport = _ports(events, "source.port", n), _ports(events, "destination.port", n)
    attacker_port = np.where(victim_is_source, dport, sport)
    victim_port = np.where(victim_is_source, sport, dport)
    # the victim is the client of a well-known service (it fetched the exploit itself):
    # evidence against a host that reached out counts in full, like its own behaviour
    victim_initiated = (
        (attacker_port >= 0) & (attacker_port < _EPHEMERAL) & (victim_port >= _EPHEMERAL)
    )
    positive = scores > 0
    as_source = np.flatnonzero(positive & attacker_in)
    as_target = np.flatnonzero(positive & victim_in)
    unsolicited = ~attacker_in & ~victim_initiated
    target_scores = np.where(unsolicited, scores * inbound_factor, scores)[as_target]
    rows = np.concatenate([as_source, as_target]).astype(np.int64)
    host = pa.concat_arrays([attacker.take(pa.array(as_source)), victim.take(pa.array(as_target))])
    peer = pa.concat_arrays([victim.take(pa.array(as_source)), attacker.take(pa.array(as_target))])
    role = pa.concat_arrays(
        [
            pa.repeat(pa.scalar(ROLE_SOURCE), len(as_source)),
            pa.repeat(pa.scalar(ROLE_TARGET), len(as_target)),
        ]
    )
    score = np.concatenate([scores[as_source], target_scores]).astype(np.float64)
    return Attributed(rows=rows, host=host, role=role, peer=peer, score=score)


def _ports(events: pa.Table, name: str, n: int) -> npt.NDArray[np.int64]:
    if name not in events.column_names:
        return np.full(n, -1, dtype=np.int64)
    values = pc.cast(events.column(name).combine_chunks(), pa.int64())
    return np.asarray(values.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _column(events: pa.Table, name: str, n: int) -> pa.Array:
    if name not in events.column_names:
        return pa.nulls(n, pa.string())
    return pc.cast(events.column(name).combine_chunks(), pa.string())
