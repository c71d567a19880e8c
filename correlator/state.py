"""The embedded store: a DuckDB file holding events, findings, incidents and checkpoints.

Each commit stores events, findings and rejects together with the new checkpoint of every
file they came from, in one transaction, so a crash loses at most the commit in flight and a
restart resumes exactly after the last one: nothing is lost or stored twice.
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

from correlator import state_files
from correlator.commit import Commit
from correlator.errors import StoreError
from correlator.schema.finding import FINDING_SCHEMA
from correlator.sources.base import Reject
from correlator.sources.files import LogFile
from correlator.sources.reader import Position
from correlator.tables import TableWriter

SCHEMA_VERSION: Final = "2"  # 2: findings carry rule versions, tactics, confidence, allowlist
FINDINGS: Final = "furui_findings"
INCIDENTS: Final = "furui_incidents"
STATUS_OPEN: Final = "open"

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS furui_meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS furui_files (
        file_key VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, head_len INTEGER NOT NULL,
        format VARCHAR NOT NULL, log_type VARCHAR NOT NULL,
        "offset" BIGINT NOT NULL, line BIGINT NOT NULL, state VARCHAR NOT NULL,
        "check" VARCHAR NOT NULL, events BIGINT NOT NULL, rejects BIGINT NOT NULL,
        skipped BIGINT NOT NULL, disk_size BIGINT, disk_mtime DOUBLE, complete BOOLEAN NOT NULL,
        error VARCHAR, updated_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS furui_quarantine (
        run_id VARCHAR NOT NULL, file_key VARCHAR NOT NULL, path VARCHAR NOT NULL,
        line BIGINT, "offset" BIGINT, reason VARCHAR NOT NULL, text BLOB,
        quarantined_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS furui_detectors (
        ruleset VARCHAR PRIMARY KEY, state BLOB NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
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


def stream_table(stream: str) -> str:
    """The events table of a stream: ``zeek.connection`` → ``events_zeek_connection``."""
    return "events_" + _IDENT.sub("_", stream.lower())


class Store:
    """The DuckDB file behind the embedded default (one writer at a time)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._tables = TableWriter(connection)

    @classmethod
    def open(cls, path: Path, *, memory_limit: str = "256MB", threads: int = 0) -> Store:
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

    def commit(self, commit: Commit, *, run_id: str) -> None:
        """Store a commit's events, findings and rejects and move its files' checkpoints.

        All of it happens in one transaction.

        Raises:
            StoreError: the write failed; nothing of the commit was stored.
        """
        now = datetime.now(UTC)
        # large states go to files first: the transaction then stores their references
        states = {
            ruleset: state_files.save(self._states, ruleset, state)
            for ruleset, state in commit.detector_states.items()
        }
        with self._transaction():
            for stream, table in commit.tables().items():
                self._tables.append(stream_table(stream), table)
            findings = commit.all_findings()
            if findings is not None:
                self._insert_findings(findings)
            for ruleset, stored in states.items():
                self._exec(
                    """INSERT OR REPLACE INTO furui_detectors VALUES (?, ?, ?)""",
                    [ruleset, stored, now],
                )
            for progress in commit.files.values():
                log, position = progress.log, progress.position
                self._exec(
                    """INSERT INTO furui_files (file_key, path, head_len, format, log_type,
                           "offset", line, state, "check", events, rejects, skipped, complete,
                           updated_at)
                       VALUES (?, ?, ?, ?, ?, 0, 1, '', '', 0, 0, 0, false, ?)
                       ON CONFLICT (file_key) DO NOTHING""",
                    [
                        progress.key,
                        str(log.path),
                        log.identity.head_len,
                        log.format.value,
                        log.log_type,
                        now,
                    ],
                )
                self._exec(
                    """UPDATE furui_files SET path = ?, "offset" = ?, line = ?, state = ?,
                           "check" = ?, events = events + ?, rejects = rejects + ?,
                           skipped = skipped + ?, complete = ?, disk_size = ?, disk_mtime = ?,
                           error = ?, updated_at = ?
                       WHERE file_key = ?""",
                    [
                        str(log.path),
                        position.offset,
                        position.line,
                        position.state,
                        position.check,
                        progress.rows,
                        len(progress.rejects),
                        progress.skipped,
                        progress.complete is not None,
                        *(progress.complete or (None, None, None)),
                        now,
                        progress.key,
                    ],
                )
                if progress.rejects:
                    self._insert_rejects(progress.rejects, key=progress.key, run_id=run_id, at=now)
        if states:
            self._prune_states()

    def detector_state(self, ruleset: str) -> bytes:
        """The state a detector had at the last commit (empty if none).

        Raises:
            StoreError: its state file is missing or altered (``state_files``).
        """
        rows = self._db.execute(
            "SELECT state FROM furui_detectors WHERE ruleset = ?", [ruleset]
        ).fetchall()
        return state_files.load(self._states, bytes(rows[0][0])) if rows else b""

    @property
    def _states(self) -> Path:
        return state_files.folder_of(self.path)

    def _prune_states(self) -> None:
        """Remove the state files no stored reference names any more."""
        rows = self._db.execute("SELECT state FROM furui_detectors").fetchall()
        names = {state_files.referenced(bytes(row[0])) for row in rows}
        state_files.prune(self._states, {n for n in names if n is not None})

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
        ids = incidents.column("event.id")
        with self._transaction():
            statuses: dict[str, str] = {}
            if self._exists(INCIDENTS):
                self._db.register("incoming_ids", pa.table({"id": ids}))
                try:
                    statuses = dict(
                        self._db.execute(
                            f"""SELECT "event.id", "furui.status" FROM {INCIDENTS}
                            WHERE "event.id" IN (SELECT id FROM incoming_ids)"""
                        ).fetchall()
                    )
                    self._exec(
                        f"""DELETE FROM {INCIDENTS}
                            WHERE "event.id" IN (SELECT id FROM incoming_ids)"""
                    )
                finally:
                    self._db.unregister("incoming_ids")
            kept = pa.array([statuses.get(i, STATUS_OPEN) for i in ids.to_pylist()], pa.string())
            now = pa.repeat(
                pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), incidents.num_rows
            )
            self._tables.append(
                INCIDENTS,
                incidents.append_column("furui.status", kept).append_column(
                    "furui.updated_at", now
                ),
            )

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
        """Run SQL against the store (for notebooks and tests) and return the result."""
        return self._db.sql(sql).to_arrow_table()

    # -- internals --------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            for ddl in _DDL:
                self._exec(ddl)
            rows = self._db.execute(
                "SELECT value FROM furui_meta WHERE key = 'schema_version'"
            ).fetchall()
        except duckdb.Error as error:
            raise StoreError(f"{self.path}: not a usable Furui store: {error}") from error
        if not rows:
            self._exec("INSERT INTO furui_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        elif rows[0][0] != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {rows[0][0]}, this Furui needs {SCHEMA_VERSION}"
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._exec("BEGIN TRANSACTION")
        try:
            yield
        except duckdb.Error as error:
            self._exec("ROLLBACK")
            self._tables = TableWriter(self._db)  # cached schemas may describe rolled-back DDL
            raise StoreError(f"{self.path}: write failed: {error}") from error
        except BaseException:
            self._exec("ROLLBACK")
            self._tables = TableWriter(self._db)
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

    def _file_rows(self, where: str, params: list[object]) -> list[dict[str, Any]]:
        rows = self._db.sql(f"SELECT * FROM furui_files WHERE {where}", params=params)
        found: list[dict[str, Any]] = rows.to_arrow_table().to_pylist()
        return found

    def _file_row(self, where: str, params: list[object]) -> dict[str, Any] | None:
        rows = self._file_rows(where, params)
        return rows[0] if rows else None

    def _insert_findings(self, findings: pa.Table) -> None:
        if not self._exists(FINDINGS):
            self._db.register("fs", FINDING_SCHEMA.empty_table())
            self._exec(f"CREATE TABLE {FINDINGS} AS SELECT * FROM fs")
            self._exec(f'ALTER TABLE {FINDINGS} ADD PRIMARY KEY ("finding.id")')
            self._db.unregister("fs")
        self._db.register("fs", findings)
        try:
            # a finding emitted again (a window that grew) replaces the earlier one
            self._exec(f"INSERT OR REPLACE INTO {FINDINGS} BY NAME SELECT * FROM fs")
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


def _quote(value: str) -> str:
    return value.replace("'", "''")
