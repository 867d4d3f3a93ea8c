"""The server's side of the replica status: the current phase, kept in one place and written
to the supervisor's status file on every change.

Phases change on two threads (uvicorn's loop: listening, stopping; the load thread: ready,
failed), so a change and its write happen under one lock, and the file's order is the
order the changes happened in.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Optional

from truss_cli.server.status import STARTING, STOPPING, ReplicaStatus, write_status

logger = logging.getLogger("truss.server")


class StatusReporter:
    def __init__(self, path: Optional[Path], replica_id: Optional[str]) -> None:
        self.path = path
        self.replica_id = replica_id
        self._lock = threading.Lock()
        self._status = ReplicaStatus(phase=STARTING, replica_id=replica_id)

    @property
    def current(self) -> ReplicaStatus:
        return self._status  # replaced, never mutated: a reader always holds a whole status

    def begin(self) -> None:
        """Write the first status; an OSError (no such directory, no permission) is the
        caller's to report, since a supervisor that cannot read the status cannot supervise."""
        if self.path is not None:
            write_status(self.path, self._status)

    def enter(self, phase: str, **fields: Any) -> None:
        """Move to `phase`, updating `fields` (port, summary, traceback) and keeping the rest."""
        with self._lock:
            if self._status.phase == STOPPING:
                # A load() that finishes during the drain must not make a stopping server "ready".
                return
            self._status = dataclasses.replace(self._status, phase=phase, **fields)
            if self.path is None:
                return
            try:
                write_status(self.path, self._status)
            except OSError as exc:
                # The server keeps serving: readiness and STATUS_PATH still tell the truth.
                logger.warning("Could not write the status file %s: %s", self.path, exc)
