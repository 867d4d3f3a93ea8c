"""One model server process on this machine, supervised: started, watched until ready, stopped.

The child runs in its own session so that a Ctrl-C reaches only `truss run`, which then
stops the child exactly once (SIGTERM: uvicorn's graceful shutdown, SIGKILL if it hangs).
On Linux the child also gets SIGTERM if `truss run` itself dies, so no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import httpx

from truss_cli.errors import TrussError

READINESS_PATH = "/v1/models/model"
_STOP_GRACE_SECONDS = 10.0
_POLL_INTERVAL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1
# Variables that would make the replica see the CLI's Python instead of its own environment.
_ENVIRONMENT_LEAKS = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")


class ReplicaExited(Exception):
    def __init__(self, exit_code: int):
        super().__init__(f"the model server exited with code {exit_code}")
        self.exit_code = exit_code


def check_port_free(host: str, port: int) -> None:
    """Fail now, before any slow work, if the server could not bind `host:port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too: a port in TIME_WAIT is usable, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise TrussError(
                    f"port {port} on {host} is already in use",
                    hint=f"stop whatever is listening there, or pick another port: truss run --port {port + 1}",
                ) from None
            raise TrussError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="check --host and --port") from None


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached via loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def replica_environment(bundle_dir: Path, config_variables: Mapping[str, str]) -> dict[str, str]:
    """The user's environment (so TRUSS_SECRET_* reach the model) plus the config's variables.

    The config's `environment_variables` win over the shell's, as they do in the image.
    """
    env = {key: value for key, value in os.environ.items() if key not in _ENVIRONMENT_LEAKS}
    env.update(config_variables)
    env["PYTHONPATH"] = str(bundle_dir)
    env["PYTHONUNBUFFERED"] = "1"  # logs appear as they happen even when piped
    return env


class Replica:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], url: str, cwd: Optional[Path] = None):
        self.command = list(command)
        self.env = dict(env)
        self.url = url
        self.cwd = cwd
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        # stdout/stderr are inherited: the model's logs go straight to the terminal.
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if sys.platform.startswith("linux") else None,
        )

    def poll(self) -> Optional[int]:
        assert self.process is not None
        return self.process.poll()

    def wait_until_ready(self) -> None:
        """Block until readiness answers 200; raise ReplicaExited if the process ends first.

        No deadline: `load()` may legitimately take minutes (downloads, large weights).
        """
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self.poll()
                if code is not None:
                    raise ReplicaExited(code)
                try:
                    if client.get(self.url + READINESS_PATH).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(_POLL_INTERVAL_SECONDS)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, grace: float = _STOP_GRACE_SECONDS) -> int:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """A pre-exec hook asking Linux to SIGTERM the child when `truss run` dies.

    libc is looked up here, in the parent: the hook runs between fork and exec, where only
    the simplest calls are safe.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook
