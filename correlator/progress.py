"""Progress bars for long work, on stderr."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class RichProgress:
    """Reading progress as a rich bar on stderr (bytes on disk)."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def start(self, total_bytes: int, files: int) -> None:
        """Show the bar."""
        self._bar.start()
        self._task = self._bar.add_task(f"Reading {files} files", total=total_bytes)

    def file(self, path: Path) -> None:
        """Name the file being read."""
        if self._task is not None:
            self._bar.update(self._task, description=f"Reading {path.name}")

    def advance(self, disk_bytes: int) -> None:
        """Move the bar."""
        if self._task is not None:
            self._bar.advance(self._task, disk_bytes)

    def stop(self) -> None:
        """Remove the bar."""
        self._bar.stop()
