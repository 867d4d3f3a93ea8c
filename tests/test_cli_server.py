"""`truss server start | status | stop` and the quick start through the remote, as a user runs
them: real `truss` processes, a real control plane in the background, a real replica."""

from __future__ import annotations

import json
import socket
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO_ROOT


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for the user: it serves nothing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class User:
    """A user with their own HOME (so their own ~/.trussrc) and data directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "PYTHONPATH": str(REPO_ROOT),
        }

    def truss(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "truss_cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"truss {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def replica_pids(self) -> list[int]:
        handles = (self.home / "data").rglob("replicas/*/handle.json")
        return [int(json.loads(path.read_text())["data"]["pid"]) for path in handles]


@pytest.fixture
def user(tmp_path: Path):
    person = User(tmp_path / "home")
    person.home.mkdir()
    yield person
    person.truss("server", "stop", "--stop-replicas", check=False, timeout=120)


def test_start_push_predict_status_and_stop_with_its_replicas(user: User) -> None:
    started = user.truss("server", "start", "--port", "0", "--runtime", "process", "--dev-idle-seconds", "120",
                         "--output", "json")
    server = json.loads(started.stdout)
    assert server["dev_idle_seconds"] == 120
    assert server["url"].startswith("http://127.0.0.1:")
    trussrc = (user.home / ".trussrc").read_text()
    assert "[local]" in trussrc and server["url"] in trussrc
    assert oct((user.home / ".trussrc").stat().st_mode & 0o777) == "0o600"

    pushed = user.truss("push", str(EXAMPLES / "hello"), "--wait", "--output", "json")
    result = json.loads(pushed.stdout)
    assert result["model"]["name"] == "hello" and result["uploaded_files"]
    assert result["deployment"]["status"] == "ACTIVE" and result["deployment"]["is_production"]

    predicted = user.truss("predict", "--model", "hello", "-d", '{"name": "remote"}')
    assert json.loads(predicted.stdout) == {"greeting": "Hello, remote!"}

    status = json.loads(user.truss("server", "status", "--output", "json").stdout)
    assert (status["runtime"], status["models"], status["deployments"], status["replicas"]) == ("process", 1, 1, 1)

    # A second push of the unchanged directory uploads nothing.
    again = user.truss("push", str(EXAMPLES / "hello"), "--no-wait")
    assert "Nothing to upload" in again.stderr

    pids = user.replica_pids()
    assert pids and all(pid_alive(pid) for pid in pids)
    user.truss("server", "stop", "--stop-replicas", timeout=120)
    # Every replica the control plane ever started is gone, not just the ones seen before
    # (a replica restarted while stopping would outlive it).
    assert not any(pid_alive(pid) for pid in [*pids, *user.replica_pids()])
    gone = user.truss("predict", "--model", "hello", "-d", "{}", check=False)
    assert gone.returncode != 0 and "truss server start" in gone.stderr


def test_stop_without_stop_replicas_leaves_them_serving_and_start_adopts_them(user: User) -> None:
    user.truss("server", "start", "--port", "0", "--runtime", "process")
    user.truss("push", str(EXAMPLES / "hello"), "--wait")
    pids = user.replica_pids()
    user.truss("server", "stop", timeout=120)
    assert pids and all(pid_alive(pid) for pid in pids)

    user.truss("server", "start", "--port", "0", "--runtime", "process")
    predicted = user.truss("predict", "--model", "hello", "-d", '{"name": "again"}')
    assert json.loads(predicted.stdout) == {"greeting": "Hello, again!"}
    assert user.replica_pids() == pids  # re-adopted, not restarted


def test_quick_start_with_no_remote_starts_the_embedded_control_plane_even_when_8800_is_taken(user: User) -> None:
    # The README's two commands on a fresh machine: no ~/.trussrc, no server running. Another
    # program holds 8800, and no Docker engine answers (auto falls back to local processes).
    user.env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            squatter.bind(("127.0.0.1", 8800))
            squatter.listen()
        except OSError:
            pass  # something else holds it already: the same situation
        pushed = user.truss("push", str(EXAMPLES / "hello"), "--wait")
        assert "No remote configured: starting the local control plane" in pushed.stderr
        assert "runtime process" in pushed.stderr
        url = next(line for line in (user.home / ".trussrc").read_text().splitlines() if line.startswith("remote_url"))
        assert ":8800" not in url

        predicted = user.truss("predict", "--model", "hello", "-d", '{"name": "quick start"}')
        assert json.loads(predicted.stdout) == {"greeting": "Hello, quick start!"}

        # A port the user names is kept: taken, it is a clear error and nothing starts.
        user.truss("server", "stop", "--stop-replicas", timeout=120)
        refused = user.truss("server", "start", "--port", "8800", check=False)
        assert refused.returncode != 0
        assert "port 8800 on 127.0.0.1 is in use" in refused.stderr and "--port" in refused.stderr


def test_a_postgresql_backed_server_keeps_its_url_off_every_command_line(user: User) -> None:
    """`--database-url` carries a password: it reaches the control plane (and the admin key it
    creates) in the environment, so `ps` never shows it, and the key lands in that database."""
    from postgres_support import shared_server

    url = shared_server().create_database()
    started = json.loads(user.truss("server", "start", "--port", "0", "--runtime", "process", "--database-url", url,
                                    "--output", "json").stdout)
    status = json.loads(user.truss("server", "status", "--output", "json").stdout)
    assert status["url"] == started["url"] and status["database"].startswith("postgresql")
    command_lines = [path.read_bytes() for path in Path("/proc").glob("[0-9]*/cmdline") if path.exists()]
    assert not any(url.encode() in line for line in command_lines)
