"""Following a deployment's logs while it comes up: the build's, then its replicas'.

The control plane's followed streams fix their sources when opened: a build stream ends
when the deployment reaches a final state, a replica stream covers the replicas running at
that moment (none during a build) and ends when they stop. So the follower reads the build
stream once, and once the build is over it (re)opens the replica stream whenever it ends,
from the last line it printed, skipping lines printed already; a replica that starts (or
restarts) later is picked up that way. Each stream is read on its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from truss_cli.client.api import Api, LogLines
from truss_cli.client.waiting import poll_intervals
from truss_cli.errors import TrussError

LineCallback = Callable[[dict[str, Any]], None]
_BUILDING = "BUILDING"
# How long a failed deployment's streams may take to deliver their last lines (they end by
# themselves then); only bounds a hang.
_DRAIN_SECONDS = 5.0


class _Channel:
    """One kind of log (build or replica), read on a thread; reopened if `reopen`."""

    def __init__(self, api: Api, model: str, deployment: str, kind: str, on_line: LineCallback, reopen: bool):
        self.api, self.model, self.deployment, self.kind = api, model, deployment, kind
        self.on_line, self.reopen = on_line, reopen
        self.finishing = threading.Event()  # no more reopening: read what is there, then end
        self.read_once_more = False  # when told to finish between two streams (after a failure)
        self.errors: list[TrussError] = []
        self._lock = threading.Lock()
        self._open: LogLines | None = None
        self._interrupted = False
        self._cursor: datetime | None = None
        self._cursor_text: str | None = None
        self._at_cursor: set[tuple[str, str]] = set()  # lines printed with the cursor's time
        self.thread = threading.Thread(target=self._run, name=f"logs-{kind}", daemon=True)

    def _run(self) -> None:
        pauses = poll_intervals()
        try:
            while True:
                printed = self._read_once()
                if not self.reopen or self.finishing.is_set():
                    return  # told to finish while reading: that stream was read to its end
                if printed:
                    pauses = poll_intervals()
                if self.finishing.wait(next(pauses)):
                    if self.read_once_more:  # a replica that failed meanwhile has its last words
                        self._read_once()
                    return
        except TrussError as exc:
            self.errors.append(exc)
        except ValueError as exc:  # a line that is not JSON: not a control plane's log stream
            self.errors.append(TrussError(f"unreadable log line ({exc})"))

    def _read_once(self) -> int:
        printed = 0
        with self.api.logs(self.model, self.deployment, since=self._cursor_text, follow=True, kind=self.kind) as lines:
            with self._lock:
                self._open = lines
                if self._interrupted:  # asked to stop while this stream was being opened
                    lines.interrupt()
            try:
                for line in lines:
                    if self._is_new(line):
                        self.on_line(line)
                        printed += 1
            finally:
                with self._lock:
                    self._open = None
        return printed

    def _is_new(self, line: dict[str, Any]) -> bool:
        text = str(line.get("at") or "")
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return True  # undated: cannot be repeated by a `since`, print it
        key = (str(line.get("source")), str(line.get("text")))
        if self._cursor is None or at > self._cursor:
            self._cursor, self._cursor_text, self._at_cursor = at, text, {key}
            return True
        if at == self._cursor and key not in self._at_cursor:
            self._at_cursor.add(key)
            return True
        return False

    def interrupt(self) -> None:
        self.finishing.set()
        with self._lock:
            self._interrupted = True
            if self._open is not None:
                self._open.interrupt()


class LogFollower:
    """Prints (through `on_line`) a deployment's build log, then its replicas' logs, until stopped.

        with LogFollower(api, model_id, deployment_id, on_line) as follower:
            wait_for_status(..., on_status=follower.saw)
            follower.finish(failed=False)
    """

    def __init__(self, api: Api, model: str, deployment: str, on_line: LineCallback) -> None:
        self._api, self._model, self._deployment = api, model, deployment
        self._print_lock = threading.Lock()

        def printing(line: dict[str, Any]) -> None:
            with self._print_lock:  # two threads: whole lines, never interleaved characters
                on_line(line)

        self._on_line = printing
        self._build = _Channel(api, model, deployment, "build", printing, reopen=False)
        self._replicas: _Channel | None = None

    def __enter__(self) -> "LogFollower":
        self._build.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(failed=False)

    def saw(self, deployment: dict[str, Any]) -> None:
        """A new status: once past the build, the replicas' logs are followed too."""
        status = deployment.get("status")
        if self._replicas is None and status not in (None, _BUILDING):
            self._replicas = _Channel(self._api, self._model, self._deployment, "replica", self._on_line, reopen=True)
            self._replicas.thread.start()

    def finish(self, failed: bool) -> None:
        """Stop following. After a failure, first let the streams deliver their last lines
        (the cause is usually in them): they end by themselves once the deployment failed."""
        channels = [channel for channel in (self._build, self._replicas) if channel is not None]
        for channel in channels:
            channel.read_once_more = failed
            channel.finishing.set()
            if failed and channel.thread.is_alive():
                channel.thread.join(_DRAIN_SECONDS)
            channel.interrupt()
        for channel in channels:
            if channel.thread.is_alive():
                channel.thread.join(_DRAIN_SECONDS)

    @property
    def errors(self) -> list[TrussError]:
        return [error for channel in (self._build, self._replicas) if channel is not None for error in channel.errors]
