"""Suricata eve.json records into normalised events, one dataset table per event type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from correlator.normalise.core import (
    NormaliseContext,
    Normalised,
    apply_mapping,
    finish,
    reject_rows,
)
from correlator.normalise.mapping import LogMapping, load_mapping
from correlator.normalise.zeek_types import safe_cast
from correlator.schema.event import CORE_SCHEMA, TIMESTAMP
from correlator.schema.flat import flatten
from correlator.sources.base import RawBatch

MODULE: Final = "suricata"
NAMESPACE: Final = "suricata.eve"


def normalise_eve(batch: RawBatch, context: NormaliseContext) -> Iterator[Normalised]:
    """Normalise a batch of eve records, yielding one result per ``event_type``.

    Nested objects are flattened to dotted names, columns that only other event types use
    are dropped, and each event type is mapped by its own table. Records without a valid
    ``timestamp`` or ``event_type`` are rejected.

    Args:
        batch: parsed eve records (any mix of event types).
        context: site knowledge (internal networks, Community ID seed).

    Yields:
        Events of one event type each, with that type's rejects.
    """
    table = flatten(batch.table, escape_dots=True)
    if "event_type" not in table.column_names:
        rows = np.arange(table.num_rows)
        yield Normalised(
            NAMESPACE,
            NAMESPACE,
            _empty(),
            reject_rows(batch, rows, ["no event_type"] * len(rows)),
        )
        return
    kinds = table.column("event_type").combine_chunks()
    missing = pc.is_null(kinds).to_numpy(zero_copy_only=False)
    if missing.any():
        rows = np.flatnonzero(missing)
        yield Normalised(
            NAMESPACE,
            NAMESPACE,
            _empty(),
            reject_rows(batch, rows, ["no event_type"] * len(rows)),
        )
    mappings = load_mapping("suricata")
    for kind in pc.unique(kinds).drop_null().to_pylist():
        keep = pc.equal(kinds, kind).fill_null(False)
        subset = _drop_empty(table.filter(keep))
        sub_batch = batch.filter(keep)
        mapping = mappings.for_log(kind) or mappings.generic(kind, "suricata").model_copy(
            update={"dataset": NAMESPACE, "namespace": NAMESPACE}
        )
        yield _normalise_type(
            subset, sub_batch, mapping=mapping, tables=mappings.tables, context=context, kind=kind
        )


def _normalise_type(
    table: pa.Table,
    batch: RawBatch,
    *,
    mapping: LogMapping,
    tables: dict[str, dict[str, str]],
    context: NormaliseContext,
    kind: str,
) -> Normalised:
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    stamps = columns.get("timestamp")
    if stamps is None:
        invalid = np.ones(table.num_rows, dtype=bool)
        converted = pa.nulls(table.num_rows, TIMESTAMP)
    else:
        result = safe_cast(_zoned(stamps), TIMESTAMP)
        converted = result.values
        invalid = result.invalid.to_numpy(zero_copy_only=False) | pc.is_null(converted).to_numpy(
            zero_copy_only=False
        )
    rows = np.flatnonzero(invalid)
    rejects = reject_rows(
        batch,
        rows,
        [
            f"bad or missing timestamp: {stamps[r].as_py()!r}"
            if stamps is not None
            else "no timestamp"
            for r in rows
        ],
    )
    columns["timestamp"] = converted
    if len(rows):
        keep = pa.array(~invalid)
        columns = {name: values.filter(keep) for name, values in columns.items()}
        batch = batch.filter(keep)
    cols = apply_mapping(columns, mapping, tables, len(batch.lines))
    done = finish(cols, batch=batch, module=MODULE, mapping=mapping, context=context)
    return Normalised(mapping.dataset, f"{NAMESPACE}.{kind}", done.events, rejects + done.rejects)


def _zoned(stamps: pa.Array) -> pa.Array:
    """Suricata writes ``+0200``; Arrow parses that, and naive times are taken as UTC."""
    text = pc.cast(stamps, pa.string())
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d{2}:?\d{2})$").fill_null(True)
    return pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))


def _drop_empty(table: pa.Table) -> pa.Table:
    """Drop the columns only other event types fill (all null in this subset)."""
    keep = [name for name in table.column_names if table.column(name).null_count < table.num_rows]
    return table.select(keep)


def _empty() -> pa.Table:
    return CORE_SCHEMA.empty_table()
