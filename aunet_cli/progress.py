"""Rich progress bar for long jobs: bytes/s, documents, ETA."""

from __future__ import annotations

import threading

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

from .prep import Progress as ProgressHooks


class RichProgress(ProgressHooks):
    def __init__(self, console: Console, description: str = "prep") -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[docs]:,} docs"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.description = description
        self.task: TaskID | None = None
        self.docs = 0
        self._lock = threading.Lock()  # prep may read several inputs at once

    def start(self, total_bytes: int | None) -> None:
        self.task = self.bar.add_task(self.description, total=total_bytes, docs=0)
        self.bar.start()

    def advance(self, raw_bytes: int, docs: int) -> None:
        with self._lock:
            self.docs += docs
            if self.task is not None:
                self.bar.update(self.task, advance=raw_bytes, docs=self.docs)

    def stop(self) -> None:
        self.bar.stop()
