"""The embedded store: a DuckDB file holding events, findings, incidents and checkpoints.

Each block of a log is committed in one transaction with its events, findings, rejects and
the file's new checkpoint, so a crash loses at most the block in flight and a restart
resumes exactly after the last committed one: nothing is lost or stored twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from correlator.errors import StoreError
from correlator.schema.finding import FINDING_SCHEMA
from correlator.schema.unify import to_type, unify
from correlator.sources.base import Reject
from correlator.sources.files import LogFile
from correlator.sources.reader import Position

SCHEMA_VERSION: Final = "1"
FINDINGS: Final = "furui_findings"
INCIDENTS: Final = "furui_incidents"
STATUS_OPEN: Final = "open"

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS furui_meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS furui_files (
        file_key VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, head_len INTEGER NOT NULL,
        format VARCHAR NOT NULL, log_type VARCHAR NOT NULL,
        "offset" BIGINT NOT NULL, line BIGINT NOT NULL, state VARCHAR NOT NULL,
        "check" VARCHAR NOT NULL,
        events BIGINT NOT NULL, rejects BIGINT NOT NULL, skipped BIGINT NOT NULL,
        disk_size BIGINT, disk_mtime DOUBLE, complete BOOLEAN NOT NULL, error VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS furui_quarantine (
        run_id VARCHAR NOT NULL, file_key VARCHAR NOT NULL, path VARCHAR NOT NULL,
        line BIGINT, "offset" BIGINT, reason VARCHAR NOT NULL, text BLOB,
        quarantined_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS furui_runs (
        run_id VARCHAR PRIMARY KEY, started TIMESTAMPTZ NOT NULL, finished TIMESTAMPTZ,
        command VARCHAR, summary VARCHAR)""",
)
_IDENT: Final = re.compile(r"[^a-z0-9_]")


@dataclass(frozen=True, slots=True)
class FileState:
    """What the store knows about a file it has read before."""

    key: str
    position: Position
    events: int
    rejects: int
    skipped: int
    disk_size: int | None
    disk_mtime: float | None
    complete: bool


@dataclass(frozen=True, slots=True)
class BlockCommit:
    """Everything one block produced, committed together."""

    log: LogFile
    position: Position
    events: dict[str, pa.Table]
    findings: pa.Table
    rejects: list[Reject]
    skipped: int

    @property
    def rows(self) -> int:
        """Events in this commit."""
        return sum(t.num_rows for t in self.events.values())

    @classmethod
    def merge(cls, commits: list[BlockCommit]) -> BlockCommit:
        """Several consecutive blocks of one file as one commit, at the last one's position."""
        if len(commits) == 1:
            return commits[0]
        streams: dict[str, list[pa.Table]] = {}
        for commit in commits:
            for stream, table in commit.events.items():
                streams.setdefault(stream, []).append(table)
        return cls(
            log=commits[-1].log,
            position=commits[-1].position,
            events={stream: unify(tables) for stream, tables in streams.items()},
            findings=pa.concat_tables([c.findings for c in commits]),
            rejects=[r for c in commits for r in c.rejects],
            skipped=sum(c.skipped for c in commits),
        )


def stream_table(stream: str) -> str:
    """The events table of a stream: ``zeek.connection`` → ``events_zeek_connection``."""
    return "events_" + _IDENT.sub("_", stream.lower())


class Store:
    """The DuckDB file behind the embedded default (one writer at a time)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._columns: dict[str, dict[str, str]] = {}

    @classmethod
    def open(cls, path: Path, *, memory_limit: str = "1GB", threads: int = 0) -> Store:
        """Open (creating if needed) the store at ``path``.

        Raises:
            StoreError: the file cannot be opened (locked by another process, not a DuckDB
                file, unwritable directory) or was written by an incompatible version.
        """
        try:
            connection = duckdb.connect(str(path))
            connection.execute(f"SET memory_limit = '{_quote(memory_limit)}'").fetchall()
            if threads:
                connection.execute(f"SET threads = {int(threads)}").fetchall()
            connection.execute("SET preserve_insertion_order = false").fetchall()
        except duckdb.Error as error:
            raise StoreError(f"{path}: cannot open the store: {error}") from error
        store = cls(connection, path)
        store._migrate()
        return store

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpoints ------------------------------------------------------------------

    def file_state(self, log: LogFile, key: str | None = None) -> FileState | None:
        """The stored state of ``log``.

        Found by ``key`` when given, else by content key, else (for a file that was shorter
        than the identity prefix when first read) by path and the prefix it had then.
        """
        row = self._file_row("file_key = ?", [key or log.identity.key])
        if row is None and key is None:
            for candidate in self._file_rows(
                "path = ? AND head_len < ?", [str(log.path), log.identity.head_len]
            ):
                if log.identity.prefix_key(int(candidate["head_len"])) == candidate["file_key"]:
                    row = candidate
                    break
        if row is None:
            return None
        return FileState(
            key=str(row["file_key"]),
            position=Position(
                int(row["offset"]), int(row["line"]), str(row["state"]), str(row["check"])
            ),
            events=int(row["events"]),
            rejects=int(row["rejects"]),
            skipped=int(row["skipped"]),
            disk_size=row["disk_size"],
            disk_mtime=row["disk_mtime"],
            complete=bool(row["complete"]),
        )

    def commit_block(self, commit: BlockCommit, *, key: str, run_id: str) -> None:
        """Store one block's events, findings and rejects and move the file's checkpoint.

        All of it happens in one transaction.

        Raises:
            StoreError: the write failed; nothing of the block was stored.
        """
        now = datetime.now(UTC)
        with self._transaction():
            for stream, table in commit.events.items():
                if table.num_rows:
                    self._append(stream_table(stream), table)
            if commit.findings.num_rows:
                self._insert_findings(commit.findings)
            if commit.rejects:
                self._insert_rejects(commit.rejects, key=key, run_id=run_id, at=now)
            position = commit.position
            self._exec(
                """UPDATE furui_files SET path = ?, "offset" = ?, line = ?, state = ?,
                       "check" = ?, events = events + ?, rejects = rejects + ?,
                       skipped = skipped + ?, complete = false, updated_at = ?
                   WHERE file_key = ?""",
                [
                    str(commit.log.path),
                    position.offset,
                    position.line,
                    position.state,
                    position.check,
                    commit.rows,
                    len(commit.rejects),
                    commit.skipped,
                    now,
                    key,
                ],
            )

    def mark_complete(
        self, key: str, *, disk_size: int, disk_mtime: float, error: str | None = None
    ) -> None:
        """Record that a file was read to its end (or to where it became unreadable)."""
        self._exec(
            """UPDATE furui_files SET complete = true, disk_size = ?, disk_mtime = ?, error = ?,
                   updated_at = ? WHERE file_key = ?""",
            [disk_size, disk_mtime, error, datetime.now(UTC), key],
        )

    def ensure_file(self, log: LogFile, key: str) -> None:
        """Register a file before its first block is committed."""
        self._exec(
            """INSERT INTO furui_files (file_key, path, head_len, format, log_type, "offset",
                   line, state, "check", events, rejects, skipped, complete, updated_at)
               VALUES (?, ?, ?, ?, ?, 0, 1, '', '', 0, 0, 0, false, ?)
               ON CONFLICT (file_key) DO NOTHING""",
            [
                key,
                str(log.path),
                log.identity.head_len,
                log.format.value,
                log.log_type,
                datetime.now(UTC),
            ],
        )

    def _file_rows(self, where: str, params: list[object]) -> list[dict[str, Any]]:
        rows = self._db.sql(f"SELECT * FROM furui_files WHERE {where}", params=params)
        found: list[dict[str, Any]] = rows.to_arrow_table().to_pylist()
        return found

    def _file_row(self, where: str, params: list[object]) -> dict[str, Any] | None:
        rows = self._file_rows(where, params)
        return rows[0] if rows else None

    # -- runs and quarantine ----------------------------------------------------------

    def start_run(self, run_id: str, command: str) -> None:
        """Record the start of a run."""
        self._exec(
            "INSERT INTO furui_runs VALUES (?, ?, NULL, ?, NULL)",
            [run_id, datetime.now(UTC), command],
        )

    def finish_run(self, run_id: str, summary: str) -> None:
        """Record the end of a run and its summary (JSON)."""
        self._exec(
            "UPDATE furui_runs SET finished = ?, summary = ? WHERE run_id = ?",
            [datetime.now(UTC), summary, run_id],
        )

    def quarantined(self, run_id: str) -> pa.Table:
        """Records quarantined during one run, in file and line order."""
        return self._db.sql(
            """SELECT path, line, "offset", reason, text, quarantined_at AS at
               FROM furui_quarantine WHERE run_id = ? ORDER BY path, line""",
            params=[run_id],
        ).to_arrow_table()

    # -- findings and incidents -------------------------------------------------------

    def findings(self) -> pa.Table:
        """Every finding in the store."""
        if not self._exists(FINDINGS):
            return FINDING_SCHEMA.empty_table()
        return self._db.sql(f"SELECT * FROM {FINDINGS}").to_arrow_table()

    def upsert_incidents(self, incidents: pa.Table) -> None:
        """Insert or replace incidents by id, keeping each one's analyst status."""
        if not incidents.num_rows:
            return
        with self._transaction():
            self._db.register("incoming", incidents)
            try:
                if not self._exists(INCIDENTS):
                    self._exec(
                        f"""CREATE TABLE {INCIDENTS} AS SELECT *,
                               '{STATUS_OPEN}'::VARCHAR AS "furui.status",
                               now() AS "furui.updated_at" FROM incoming LIMIT 0"""
                    )
                self._exec(
                    f"""CREATE OR REPLACE TEMP TABLE incoming_status AS
                        SELECT i.*, coalesce(o."furui.status", '{STATUS_OPEN}') AS "furui.status",
                               now() AS "furui.updated_at"
                        FROM incoming i LEFT JOIN {INCIDENTS} o USING ("event.id")"""
                )
                self._exec(
                    f"""DELETE FROM {INCIDENTS}
                        WHERE "event.id" IN (SELECT "event.id" FROM incoming)"""
                )
                self._exec(f"INSERT INTO {INCIDENTS} BY NAME SELECT * FROM incoming_status")
                self._exec("DROP TABLE incoming_status")
            finally:
                self._db.unregister("incoming")

    def incidents(self) -> pa.Table:
        """Every incident, riskiest first."""
        if not self._exists(INCIDENTS):
            return pa.table({})
        return self._db.sql(
            f"""SELECT * FROM {INCIDENTS}
                ORDER BY "event.risk_score" DESC, "host.ip", "@timestamp" """
        ).to_arrow_table()

    def set_status(self, incident_id: str, status: str) -> bool:
        """Set an incident's analyst status; false if no such incident."""
        if not self._exists(INCIDENTS):
            return False
        updated = self._db.execute(
            f"""UPDATE {INCIDENTS} SET "furui.status" = ? WHERE "event.id" = ?
                RETURNING "event.id" """,
            [status, incident_id],
        ).fetchall()
        return bool(updated)

    def event_count(self, stream: str | None = None) -> int:
        """Events stored, in one stream or in all."""
        tables = [stream_table(stream)] if stream else self.event_tables()
        total = 0
        for table in tables:
            if self._exists(table):
                rows = self._db.execute(f"SELECT count(*) FROM {table}").fetchall()
                total += int(rows[0][0])
        return total

    def event_tables(self) -> list[str]:
        """Names of the per-stream event tables."""
        rows = self._db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'events\\_%' ESCAPE '\\'"
            " ORDER BY table_name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def query(self, sql: str) -> pa.Table:
        """Run a read-only SQL query against the store (for notebooks and tests)."""
        return self._db.sql(sql).to_arrow_table()

    # -- internals --------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            for ddl in _DDL:
                self._exec(ddl)
            rows = self._db.execute(
                "SELECT value FROM furui_meta WHERE key = 'schema_version'"
            ).fetchall()
            row = rows[0] if rows else None
        except duckdb.Error as error:
            raise StoreError(f"{self.path}: not a usable Furui store: {error}") from error
        if row is None:
            self._exec("INSERT INTO furui_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        elif row[0] != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {row[0]}, this Furui needs {SCHEMA_VERSION}"
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._exec("BEGIN TRANSACTION")
        try:
            yield
        except duckdb.Error as error:
            self._exec("ROLLBACK")
            raise StoreError(f"{self.path}: write failed: {error}") from error
        except BaseException:
            self._exec("ROLLBACK")
            raise
        self._exec("COMMIT")

    def _exec(self, sql: str, params: list[object] | None = None) -> None:
        """Run a statement and consume its result, as DuckDB wants before the next one."""
        self._db.execute(sql, params).fetchall()

    def _exists(self, table: str) -> bool:
        rows = self._db.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchall()
        return bool(rows[0][0])

    def _append(self, table: str, batch: pa.Table) -> None:
        """Append a batch, adding columns it brings and reconciling conflicting types."""
        known = self._columns.get(table)
        if known is None and self._exists(table):
            known = self._describe(table)
        # an all-null column carries no type: store it under the table's type, or not at all
        nulls = [f.name for f in batch.schema if pa.types.is_null(f.type)]
        batch = batch.drop_columns([n for n in nulls if known is None or n not in known])
        self._db.register("batch", batch)
        try:
            if known is None:
                self._exec(f"CREATE TABLE {table} AS SELECT * FROM batch LIMIT 0")
                known = self._describe(table)
            incoming = dict(
                self._db.execute("SELECT column_name, column_type FROM (DESCRIBE batch)").fetchall()
            )
            changed = False
            for name, kind in incoming.items():
                if name not in known:
                    self._exec(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
                    changed = True
                elif known[name] != kind and kind != _NULL_TYPE:
                    wider = _wider(known[name], kind)
                    if wider != known[name]:
                        self._exec(f'ALTER TABLE {table} ALTER "{name}" TYPE {wider}')
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
            self._exec(f"INSERT INTO {table} BY NAME SELECT * FROM batch")
        finally:
            self._db.unregister("batch")

    def _describe(self, table: str) -> dict[str, str]:
        return dict(
            self._db.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
        )

    def _insert_findings(self, findings: pa.Table) -> None:
        if not self._exists(FINDINGS):
            self._db.register("fs", FINDING_SCHEMA.empty_table())
            self._exec(f"CREATE TABLE {FINDINGS} AS SELECT * FROM fs")
            self._exec(f'ALTER TABLE {FINDINGS} ADD PRIMARY KEY ("finding.id")')
            self._db.unregister("fs")
        self._db.register("fs", findings)
        try:
            self._exec(f"INSERT OR IGNORE INTO {FINDINGS} BY NAME SELECT * FROM fs")
        finally:
            self._db.unregister("fs")

    def _insert_rejects(
        self, rejects: list[Reject], *, key: str, run_id: str, at: datetime
    ) -> None:
        rows = pa.table(
            {
                "run_id": pa.repeat(pa.scalar(run_id), len(rejects)),
                "file_key": pa.repeat(pa.scalar(key), len(rejects)),
                "path": pa.array([r.location.path for r in rejects], pa.string()),
                "line": pa.array([r.location.line for r in rejects], pa.int64()),
                "offset": pa.array([r.offset for r in rejects], pa.int64()),
                "reason": pa.array([r.reason for r in rejects], pa.string()),
                "text": pa.array([r.text for r in rejects], pa.binary()),
                "quarantined_at": pa.repeat(
                    pa.scalar(at, pa.timestamp("us", tz="UTC")), len(rejects)
                ),
            }
        )
        self._db.register("rj", rows)
        try:
            self._exec("INSERT INTO furui_quarantine BY NAME SELECT * FROM rj")
        finally:
            self._db.unregister("rj")


_INTEGERS: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
)
_NUMBERS: Final = _INTEGERS | {"FLOAT", "DOUBLE"}
_NULL_TYPE: Final = '"NULL"'


def _wider(existing: str, incoming: str) -> str:
    """The column type that holds values of both types (text when nothing narrower does)."""
    if existing == incoming:
        return existing
    if existing in _INTEGERS and incoming in _INTEGERS:
        return "BIGINT"
    if existing in _NUMBERS and incoming in _NUMBERS:
        return "DOUBLE"
    return "VARCHAR"


def _quote(value: str) -> str:
    return value.replace("'", "''")
