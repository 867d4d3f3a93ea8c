"""Timestamped log files: a build's log and a replica's, in the one format `logshim` writes."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

from truss_cli.controlplane.runtimes.base import LogLine
from truss_cli.controlplane.runtimes.logshim import append_line

_FOLLOW_POLL_SECONDS = 0.2


class LogFile:
    """Appends timestamped lines to a file (a build log). Usable as a plain callback."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, text: str) -> None:
        for line in str(text).splitlines() or [""]:
            append_line(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def parse_line(raw: str) -> LogLine:
    stamp, _, text = raw.rstrip("\n").partition(" ")
    try:
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:  # not written by us (a truncated first line): keep the text, date it now
        return LogLine(datetime.now(timezone.utc), raw.rstrip("\n"))
    return LogLine(at, text)


def read_lines(
    path: Path,
    since: Optional[datetime] = None,
    follow: bool = False,
    is_alive: Callable[[], bool] = lambda: False,
) -> Iterator[LogLine]:
    """The lines of `path` written at or after `since`; with `follow`, also the lines written
    later, until `is_alive()` says the writer is gone and everything it wrote was read."""
    try:
        source = open(path, "r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with source:
        pending = ""
        while True:
            # Asked before reading: a writer that ended meanwhile is still read to its end.
            alive = follow and is_alive()
            while chunk := source.readline():
                pending += chunk
                if not pending.endswith("\n"):
                    continue  # half of a line: the rest is still being written
                line, pending = parse_line(pending), ""
                if since is None or line.at >= since:
                    yield line
            if not alive:
                break
            time.sleep(_FOLLOW_POLL_SECONDS)
        if pending:
            line = parse_line(pending)
            if since is None or line.at >= since:
                yield line
