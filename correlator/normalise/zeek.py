"""Zeek logs (TSV or JSON) into normalised events."""

from __future__ import annotations

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
from correlator.normalise.mapping import load_mapping
from correlator.normalise.zeek_schema import known_types
from correlator.normalise.zeek_types import (
    Converted,
    TsvMarkers,
    arrow_type,
    convert_json,
    convert_tsv,
)
from correlator.sources.base import LogFormat, RawBatch

MODULE: Final = "zeek"


def normalise_zeek(batch: RawBatch, context: NormaliseContext) -> Normalised:
    """Normalise one batch of a Zeek log.

    Values are converted to their Zeek types (rows with a malformed value, or without a
    timestamp, are rejected with the field and value named), renamed by the log's mapping
    table (or kept generically for an unknown log type) and completed with the core columns.

    Args:
        batch: parsed records of one Zeek log.
        context: site knowledge (internal networks, Community ID seed).

    Returns:
        The events and the rejected records.
    """
    mappings = load_mapping("zeek")
    mapping = mappings.for_log(batch.log_type) or mappings.generic(batch.log_type, MODULE)
    typed, invalid, reasons = _typed_columns(batch)
    ts = typed.get("ts")
    if ts is None:
        invalid[:] = True
        reasons = ["no ts field"] * len(invalid)
    else:
        missing = pc.is_null(ts).to_numpy(zero_copy_only=False) & ~invalid
        for row in np.flatnonzero(missing):
            reasons[row] = "missing timestamp (ts)"
        invalid |= missing
    bad_rows = np.flatnonzero(invalid)
    rejects = reject_rows(batch, bad_rows, [reasons[r] for r in bad_rows])
    if len(bad_rows):
        keep = pa.array(~invalid)
        typed = {name: values.filter(keep) for name, values in typed.items()}
        batch = batch.filter(keep)
    cols = apply_mapping(typed, mapping, mappings.tables, batch.table.num_rows)
    done = finish(
        cols,
        batch=batch,
        module=MODULE,
        mapping=mapping,
        context=context,
        local_orig=typed.get("local_orig"),
        local_resp=typed.get("local_resp"),
    )
    return Normalised(mapping.dataset, mapping.dataset, done.events, rejects + done.rejects)


def _typed_columns(batch: RawBatch) -> tuple[dict[str, pa.Array], np.ndarray, list[str]]:
    """Convert every column to its Zeek type, noting the rows with malformed values."""
    n = batch.table.num_rows
    invalid = np.zeros(n, dtype=bool)
    reasons = [""] * n
    markers = TsvMarkers(*batch.tsv_markers)
    typed: dict[str, pa.Array] = {}
    types = batch.zeek_types
    for name in batch.table.column_names:
        raw = batch.table.column(name).combine_chunks()
        zeek_type = types.get(name, "time" if name == "ts" else None)
        if batch.format in (LogFormat.ZEEK_TSV, LogFormat.ZEEK_CSV):  # CSV cells hold TSV text
            converted = convert_tsv(raw, zeek_type or "string", markers)
        elif zeek_type is not None:
            converted = convert_json(raw, zeek_type)
        else:
            converted = Converted(raw, pa.array(np.zeros(n, dtype=bool)))
        bad = converted.invalid.to_numpy(zero_copy_only=False) & ~invalid
        for row in np.flatnonzero(bad):
            reasons[row] = f"field {name}: {raw[row].as_py()!r} is not a valid {zeek_type}"
        invalid |= bad
        typed[name] = converted.values
    # Zeek JSON leaves unset fields out, and Zeek versions differ in fields: every field the
    # known schema of the log has is a column, so all renderings and versions agree
    for name, zeek_type in known_types(batch.log_type).items():
        if name not in typed:
            typed[name] = pa.nulls(n, arrow_type(zeek_type))
    return typed, invalid, reasons
