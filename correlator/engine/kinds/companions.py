"""Finding an event's companions: join keys of list-valued fields, time-window lookups.

Used by the ``absence`` kind (``kinds/absence.py``): the companion rows of a batch, the
keys of events (one per element of a list-valued field, such as the addresses of a DNS
answer), whether another event with the same key lies within a time window around each of
many events (one ``searchsorted``), and thinning a table of companions without changing any
such answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from correlator.engine.batch import Batch
from correlator.engine.kinds.absence_params import Companion
from correlator.engine.rule import Rule
from correlator.engine.window import MICROS, join_key

#: Companions: their rule, clause, key and time; per key and time bucket only the earliest
#: and the latest are kept (``thin``).
COMPANIONS: Final = pa.schema(
    [
        pa.field("rule_id", pa.string()),
        pa.field("clause", pa.int32()),
        pa.field("key", pa.string()),
        pa.field("bucket", pa.int64()),
        pa.field("ts", pa.int64()),
    ]
)


@dataclass(frozen=True, slots=True)
class KeyRows:
    """Join keys of some events: each key and the position of its event."""

    owner: npt.NDArray[np.int64]
    key: pa.Array


def key_rows(batch: Batch, rows: npt.NDArray[np.int64], fields: Sequence[str]) -> KeyRows:
    """The join keys of some rows of a batch, one per combination of list elements.

    A list-valued field gives one key per element (a DNS answer's addresses); a row with a
    null part, or an empty list, has no key.
    """
    owner = np.arange(len(rows), dtype=np.int64)
    parts: list[pa.Array] = []
    for name in fields:
        values = batch.column(name)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            picked = values.take(pa.array(rows[owner]))
            lengths = pc.list_value_length(picked).fill_null(0)
            parent = np.repeat(
                np.arange(len(owner), dtype=np.int64),
                np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64),
            )
            parts = [p.take(pa.array(parent)) for p in parts]
            parts.append(pc.cast(pc.list_flatten(picked), pa.string()))
            owner = owner[parent]
        else:
            parts.append(batch.text(name).take(pa.array(rows[owner])))
    present = np.ones(len(owner), dtype=bool)
    for part in parts:
        present &= np.asarray(pc.is_valid(part).to_numpy(zero_copy_only=False), dtype=bool)
    keep = pa.array(np.flatnonzero(present))
    return KeyRows(owner[present], join_key([p.take(keep) for p in parts]))


def has_companion(
    keys: pa.Array,
    ts: npt.NDArray[np.int64],
    companion_keys: pa.Array,
    companion_ts: npt.NDArray[np.int64],
    *,
    before_us: int,
    after_us: int,
) -> npt.NDArray[np.bool_]:
    """For each key and time, whether a companion of that key lies in ``[ts - before, ts + after]``.

    One ``searchsorted``: companions sorted by (key, time), each query looks up the first
    companion of its key at or after ``ts - before`` and checks it is not after
    ``ts + after``. Times are replaced by dense ranks so that ``code * width + rank``
    orders by key, then time, without overflow.
    """
    n = len(companion_keys)
    if not n or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    codes = pc.dictionary_encode(pa.concat_arrays([companion_keys, keys])).indices
    code = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
    own, asked = code[:n], code[n:]
    low = ts - before_us
    times, ranks = np.unique(np.concatenate([companion_ts, low]), return_inverse=True)
    width = np.int64(len(times) + 1)
    combined = own * width + ranks[:n]
    order = np.argsort(combined, kind="stable")
    at = np.searchsorted(combined[order], asked * width + ranks[n:], side="left")
    inside = at < n
    first = order[np.minimum(at, n - 1)]
    found: npt.NDArray[np.bool_] = (
        inside & (own[first] == asked) & (companion_ts[first] <= ts + after_us)
    )
    return found


def thin(companions: pa.Table) -> pa.Table:
    """Keep, per clause, key and bucket, only the earliest and the latest companion.

    Exact for the question asked (is there a companion in ``[t - before, t + after]``?):
    a bucket is no wider than that interval, so if any companion of a bucket lies in it,
    the bucket's earliest or its latest does. A host's lookups then cost two rows per
    window, not one per lookup. One ``lexsort`` over integer codes.
    """
    if companions.num_rows < 3:  # noqa: PLR2004 - nothing to thin
        return companions
    columns = [
        np.asarray(pc.dictionary_encode(companions.column(name).combine_chunks()).indices)
        for name in ("rule_id", "key")
    ]
    rule, key = (np.asarray(c, dtype=np.int64) for c in columns)
    clause = np.asarray(companions.column("clause").to_numpy(), dtype=np.int64)
    bucket = np.asarray(companions.column("bucket").to_numpy(), dtype=np.int64)
    ts = np.asarray(companions.column("ts").to_numpy(), dtype=np.int64)
    order = np.lexsort((ts, bucket, key, clause, rule))
    cell = np.stack([rule[order], clause[order], key[order], bucket[order]])
    first = np.ones(len(order), dtype=bool)
    first[1:] = (cell[:, 1:] != cell[:, :-1]).any(axis=0)
    last = np.ones(len(order), dtype=bool)
    last[:-1] = first[1:]
    return companions.take(pa.array(np.sort(order[first | last])))


def companion_rows(batch: Batch, rule: Rule, index: int, clause: Companion) -> pa.Table:
    """The companions of clause ``index`` of ``rule`` in a batch, one row per key."""
    rows = np.flatnonzero(batch.where(clause.where))
    pairs = key_rows(batch, rows, clause.by)
    n = len(pairs.owner)
    ts = batch.ts[rows][pairs.owner]
    # buckets as wide as the clause's whole time window: see thin
    width = max((clause.before + clause.after) * MICROS, 1)
    return pa.table(
        {
            "rule_id": pa.repeat(pa.scalar(rule.id), n),
            "clause": pa.repeat(pa.scalar(index, pa.int32()), n),
            "key": pairs.key,
            "bucket": pa.array(ts // width, pa.int64()),
            "ts": pa.array(ts, pa.int64()),
        },
        schema=COMPANIONS,
    )
