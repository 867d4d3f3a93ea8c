"""external_data downloads on the terminal: one bar per file, with bytes and speed.

Nothing is shown while everything comes from the cache. `truss run` prepares under a
spinner, and rich draws one live display at a time, so the spinner is paused while bars
are up and resumed when they close.
"""

from __future__ import annotations

from typing import Optional

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.status import Status

from truss_cli.cli import console
from truss_cli.external_data import DownloadProgress


class DownloadBars:
    def __init__(self, paused: Optional[Status] = None) -> None:
        self._paused = paused
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console.err,
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: DownloadProgress) -> None:
        if not self._tasks:
            if self._paused is not None:
                self._paused.stop()
            self._progress.start()
        task = self._tasks.get(event.label)
        if task is None:
            task = self._progress.add_task(f"{event.label} {escape(event.url)}", total=event.total)
            self._tasks[event.label] = task
        self._progress.update(task, completed=event.received, total=event.total)

    def close(self) -> None:
        """Take the bars down (if any were shown) and give the terminal back to the spinner."""
        if self._progress.live.is_started:
            self._progress.stop()
            if self._paused is not None:
                self._paused.start()

    def __enter__(self) -> "DownloadBars":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
