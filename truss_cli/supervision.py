"""What every supervisor of a replica shares, whatever runs it (a local process, a container,
later a control plane's runtime): where the replica's log goes, and how a failed start reads."""

from __future__ import annotations

from typing import Optional, Protocol


class LogSink(Protocol):
    """Where a replica's log goes (a terminal, a file): a binary write and a flush."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...


class ReplicaFailed(Exception):
    """The replica failed before it was ready: it exited, or (staying up) reports a failed load."""

    def __init__(self, summary: Optional[str], exit_code: Optional[int] = None, traceback: Optional[str] = None):
        ended = "reports a failed load" if exit_code is None else f"exited with code {exit_code}"
        super().__init__(f"the model server {ended} before it was ready" + (f": {summary}" if summary else ""))
        self.summary = summary  # the server's one line (None if it died before saying why)
        self.exit_code = exit_code  # None while a replica that stays up still runs
        self.traceback = traceback  # trimmed to the model's code
