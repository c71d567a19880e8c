"""What one store transaction holds.

Events, findings and rejects of one or more files, and where each of them stands afterwards.

Blocks are buffered, across files, until enough events have gathered for a large insert
(DuckDB inserts large batches several times faster than small ones); every file's
checkpoint moves in the same transaction as its data, so a crash loses only the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from correlator.schema.unify import unify
from correlator.sources.base import Reject
from correlator.sources.files import LogFile
from correlator.sources.reader import Position


@dataclass(slots=True)
class FileProgress:
    """How far one file got within a commit.

    Attributes:
        key: the file's key in the store.
        log: the file.
        position: checkpoint after the file's last block in the commit.
        rows: events of the file in the commit.
        rejects: records of the file kept aside.
        skipped: records skipped on purpose (Suricata ``stats``).
        complete: ``(size, mtime, error)`` once the file has been read to its end.
    """

    key: str
    log: LogFile
    position: Position
    rows: int = 0
    rejects: list[Reject] = field(default_factory=list)
    skipped: int = 0
    complete: tuple[int, float, str | None] | None = None


@dataclass(slots=True)
class Commit:
    """A buffer of blocks to store in one transaction."""

    events: dict[str, list[pa.Table]] = field(default_factory=dict)
    findings: list[pa.Table] = field(default_factory=list)
    files: dict[str, FileProgress] = field(default_factory=dict)
    detector_states: dict[str, bytes] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Events buffered."""
        return sum(t.num_rows for tables in self.events.values() for t in tables)

    def add(
        self,
        *,
        key: str,
        log: LogFile,
        position: Position,
        events: dict[str, pa.Table],
        findings: pa.Table,
        rejects: list[Reject],
        skipped: int,
    ) -> None:
        """Buffer one block of file ``key``, read up to ``position``."""
        for stream, table in events.items():
            if table.num_rows:
                self.events.setdefault(stream, []).append(table)
        if findings.num_rows:
            self.findings.append(findings)
        progress = self.files.setdefault(key, FileProgress(key, log, position))
        progress.position = position
        progress.rows += sum(t.num_rows for t in events.values())
        progress.rejects.extend(rejects)
        progress.skipped += skipped

    def finish_file(
        self,
        key: str,
        log: LogFile,
        position: Position,
        *,
        size: int,
        mtime: float,
        error: str | None,
    ) -> None:
        """Record that file ``key`` was read to its end (stored with this commit)."""
        progress = self.files.setdefault(key, FileProgress(key, log, position))
        progress.complete = (size, mtime, error)

    def add_findings(self, findings: pa.Table) -> None:
        """Buffer findings that belong to no block (a detector's ``finish``)."""
        if findings.num_rows:
            self.findings.append(findings)

    @property
    def empty(self) -> bool:
        """Nothing to store."""
        return not (self.files or self.findings or self.detector_states)

    def tables(self) -> dict[str, pa.Table]:
        """The buffered events, one table per stream."""
        return {stream: unify(tables) for stream, tables in self.events.items()}

    def all_findings(self) -> pa.Table | None:
        """The buffered findings, or ``None``."""
        return pa.concat_tables(self.findings) if self.findings else None
