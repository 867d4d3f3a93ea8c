"""Image push progress on the terminal: one bar per layer with bytes sent; on a non-terminal
(CI logs), one line per layer as it finishes."""

from __future__ import annotations

from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from truss_cli.cli import console
from truss_cli.image.registry import LayerProgress


class PushBars:
    def __init__(self, destination: str) -> None:
        self._destination = destination
        self._interactive = console.err.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console.err,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._finished: set[str] = set()
        self._announced = False
        self._totals: dict[str, int] = {}
        self.sent_layers = 0
        self.existing_layers = 0

    def __enter__(self) -> "PushBars":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress.live.is_started:
            self._progress.stop()

    def __call__(self, event: LayerProgress) -> None:
        if not self._announced and not self._interactive:
            console.err.print(f"Pushing to {self._destination}", markup=False)
            self._announced = True
        if event.done:
            self._finish(event)
            return
        if not self._interactive:
            return
        if not self._progress.live.is_started:
            self._progress.start()
        task = self._tasks.get(event.layer)
        if task is None:
            task = self._progress.add_task(f"{event.layer} {event.status}", total=event.total)
            self._tasks[event.layer] = task
        if event.total:
            self._totals[event.layer] = event.total
        total = self._totals.get(event.layer)
        # The engine's byte count can run past the total it stated for the layer: a full bar, not 104%.
        completed = min(event.current or 0, total) if total else event.current or 0
        self._progress.update(task, description=f"{event.layer} {event.status}", completed=completed, total=total)

    def _finish(self, event: LayerProgress) -> None:
        if event.layer in self._finished:
            return
        self._finished.add(event.layer)
        if event.status == "Pushed":
            self.sent_layers += 1
        else:
            self.existing_layers += 1
        task = self._tasks.get(event.layer)
        if self._interactive and task is not None:
            total = self._totals.get(event.layer)
            self._progress.update(task, description=f"{event.layer} {event.status}", completed=total or 0, total=total)
        elif not self._interactive:
            console.err.print(f"  {event.layer}: {event.status}", markup=False, highlight=False)
