"""A replica's structured status: what phase it is in and, when it failed, why.

The model server writes it (to the file its supervisor names in STATUS_FILE_ENV, and at
STATUS_PATH); supervisors read it instead of searching log lines. Standard library only:
both sides import it, and it ships inside every replica.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

STARTING = "starting"  # the process runs; the server does not listen yet
LOADING = "loading"  # the server listens; load() runs
READY = "ready"  # load() finished; predictions are served
FAILED = "failed"  # the model's import or load() failed (summary, traceback)
STOPPING = "stopping"  # SIGTERM received: draining in-flight requests
PHASES = (STARTING, LOADING, READY, FAILED, STOPPING)
_DEVELOPMENT_FIELDS = ("tree_hash", "generation", "control_port")


@dataclass
class ReplicaStatus:
    phase: str
    pid: int = field(default_factory=os.getpid)
    replica_id: Optional[str] = None
    # The port the server listens on (the one it bound when asked for port 0); None before.
    port: Optional[int] = None
    # On failure: one line such as `load failed: ZeroDivisionError: division by zero
    # (model/model.py, line 7)`, and the traceback trimmed to the user's code.
    summary: Optional[str] = None
    traceback: Optional[str] = None
    # A development replica (`python -m truss_cli.server.control`) only: the tree hash of the
    # code it serves, which worker generation serves it, and the port of its control API.
    tree_hash: Optional[str] = None
    generation: Optional[int] = None
    control_port: Optional[int] = None

    def to_json(self) -> str:
        fields = asdict(self)
        for name in _DEVELOPMENT_FIELDS:  # a plain replica's status stays as it was
            if fields[name] is None:
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ReplicaStatus":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("phase") not in PHASES:
            raise ValueError(f"not a replica status: {text[:200]!r}")
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def write_status(path: Path, status: ReplicaStatus) -> None:
    """Replace the file at `path` with `status`, atomically (a reader never sees half of it)."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            output.write(status.to_json())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_status(path: Path) -> Optional[ReplicaStatus]:
    """The status at `path`, or None when there is none yet (or it is not a status)."""
    try:
        return ReplicaStatus.from_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
