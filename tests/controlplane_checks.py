"""Checks the control-plane tests share: answers as expected, the store's own rows, the
processes of a deployment's replicas, and polling until something holds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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


def replica_handles(data_dir: Path, deployment_id: str) -> list[dict[str, Any]]:
    handles = []
    for path in (data_dir / "replicas").glob("*/handle.json"):
        try:
            handle = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if handle["deployment_id"] == deployment_id and handle.get("url"):
            handles.append(handle)
    return handles


def current_replica_pid(data_dir: Path, deployment_id: str) -> int | None:
    handles = replica_handles(data_dir, deployment_id)
    return int(handles[0]["data"]["pid"]) if len(handles) == 1 else None


def kill_replica(data_dir: Path, deployment_id: str) -> int:
    pid = current_replica_pid(data_dir, deployment_id)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    return pid


def process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def sessions_running_under(directory: Path) -> set[int]:
    """The sessions of the live processes that work in `directory` (their cwd, or a path on
    their command line, is under it): for a data dir's replicas/, every process runtime
    replica still running, whether or not a handle names it."""
    inside = str(directory.resolve()) + "/"
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd") + "/"
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            text = (proc / "stat").read_text()
        except OSError:
            continue  # ended meanwhile, or not ours to read
        fields = text[text.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and (cwd.startswith(inside) or inside in cmdline):
            found.add(int(fields[3]))
    return found
