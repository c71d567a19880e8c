"""Appending Arrow batches to DuckDB tables whose schema grows with the data.

Sensors add fields over time and disagree on types; a table gains a column the first time a
batch brings it, and a column whose values stop fitting its type is widened (integers to
BIGINT, numbers to DOUBLE, anything else to text) instead of failing the insert.
"""

from __future__ import annotations

from typing import Final

import duckdb
import pyarrow as pa

from correlator.schema.unify import to_type

_INTEGERS: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
)
_NUMBERS: Final = _INTEGERS | {"FLOAT", "DOUBLE"}
_NULL_TYPE: Final = '"NULL"'


def wider(existing: str, incoming: str) -> str:
    """The column type that holds values of both types (text when nothing narrower does)."""
    if existing == incoming:
        return existing
    if existing in _INTEGERS and incoming in _INTEGERS:
        return "BIGINT"
    if existing in _NUMBERS and incoming in _NUMBERS:
        return "DOUBLE"
    return "VARCHAR"


class TableWriter:
    """Appends batches to tables of one connection, caching their schemas."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        self._columns: dict[str, dict[str, str]] = {}

    def forget(self, table: str) -> None:
        """Drop the cached schema of ``table`` (after it was changed elsewhere)."""
        self._columns.pop(table, None)

    def append(self, table: str, batch: pa.Table) -> None:
        """Append ``batch`` to ``table`` (created if missing), evolving its schema."""
        known = self._columns.get(table)
        if known is None and self._exists(table):
            known = self._describe(table)
        # an all-null column carries no type: store it under the table's type, or not at all
        nulls = [f.name for f in batch.schema if pa.types.is_null(f.type)]
        batch = batch.drop_columns([n for n in nulls if known is None or n not in known])
        self._db.register("batch", batch)
        try:
            if known is None:
                self._run(f"CREATE TABLE {table} AS SELECT * FROM batch LIMIT 0")
                known = self._describe(table)
            incoming = dict(
                self._db.execute("SELECT column_name, column_type FROM (DESCRIBE batch)").fetchall()
            )
            changed = False
            for name, kind in incoming.items():
                if name not in known:
                    self._run(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
                    changed = True
                elif known[name] != kind and kind != _NULL_TYPE:
                    target = wider(known[name], kind)
                    if target != known[name]:
                        self._run(f'ALTER TABLE {table} ALTER "{name}" TYPE {target}')
                        changed = True
            if changed:
                known = self._describe(table)
            self._columns[table] = known
            to_text = [
                n
                for n, k in incoming.items()
                if known[n] == "VARCHAR" and k not in ("VARCHAR", _NULL_TYPE)
            ]
            if to_text:
                self._db.unregister("batch")
                for name in to_text:
                    index = batch.column_names.index(name)
                    batch = batch.set_column(index, name, to_type(batch.column(name), pa.string()))
                self._db.register("batch", batch)
            self._run(f"INSERT INTO {table} BY NAME SELECT * FROM batch")
        finally:
            self._db.unregister("batch")

    def _run(self, sql: str) -> None:
        self._db.execute(sql).fetchall()

    def _exists(self, table: str) -> bool:
        rows = self._db.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchall()
        return bool(rows[0][0])

    def _describe(self, table: str) -> dict[str, str]:
        return dict(
            self._db.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
        )
