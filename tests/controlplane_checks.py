"""Checks the control-plane tests share: answers as expected, the store's own rows, the
processes of a deployment's replicas, and polling until something holds."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import httpx

from controlplane_support import ControlPlaneProcess
from truss_cli.controlplane.store import Store


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    return body


@contextlib.contextmanager
def opened_store(cp: ControlPlaneProcess) -> Iterator[Store]:
    """The control plane's own rows, read from the test (SQLite in WAL mode: a second reader is fine)."""
    with Store.open(cp.data_dir) as store:
        yield store


def replica_sessions(cp: ControlPlaneProcess, deployment_id: str) -> list[int]:
    """The sessions of every replica the deployment ever had: the process runtime starts each
    replica as the leader of a session of its own, so the session holds all its processes."""
    with opened_store(cp) as store:
        return [int(r.handle["data"]["pid"]) for r in store.replicas.list(deployment_id)]


def live_processes_in(sessions: list[int]) -> list[int]:
    """The pids of the processes (not zombies) that belong to one of `sessions`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[3]) in sessions:  # state, ..., session
            found.append(int(stat.parent.name))
    return found


def eventually(check: Any, timeout: float = 120.0) -> Any:
    """Poll `check()` until it returns something truthy (the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"still {result!r} after {timeout} s"
        time.sleep(0.2)
