"""What the custom server tests share: the test app, a port for it, and a replica of it
(`python -m truss_cli.server.custom` as a subprocess on port 0, its port read from the
status file, as a supervisor reads it)."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import httpx
import pytest

from conftest import REPO_ROOT
from truss_cli.server import protocol
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.status import ReplicaStatus, read_status

APP = Path(__file__).resolve().parent / "custom_server_app.py"
_numbers = itertools.count()


@pytest.fixture
def reserve_port() -> Iterator[Callable[[], int]]:
    """Ports for custom servers, each held for the test by a bound socket that never listens.

    Truss's config names the custom server's port, so a test picks it before the server binds
    it; a port probed as free could be taken by anyone in between. Here the kernel picks it
    (bind to port 0) and the holding socket keeps it out of every later bind to port 0 (other
    tests, other test runs), while the custom server still binds it: the holder and the server
    both set SO_REUSEADDR and the holder never listens, which Linux allows (a bind is refused
    next to a listener, or without SO_REUSEADDR on both). Python's http.server and uvicorn set
    it; the replica's check that nothing answers on the port passes, as a socket that does not
    listen refuses connections. Linux semantics: BSD and macOS would refuse the second bind.
    """
    holders: list[socket.socket] = []

    def reserve() -> int:
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holders.append(holder)
        return holder.getsockname()[1]

    yield reserve
    for holder in holders:
        holder.close()


def app_options(port: int, command: Optional[str] = None, secrets: tuple = ()) -> CustomServerOptions:
    return CustomServerOptions(
        start_command=command or f"{sys.executable} {APP} {port}",
        server_port=port,
        predict_endpoint="/predict",
        readiness_endpoint="/ready",
        liveness_endpoint="/alive",
        secrets=secrets,
    )


class CustomReplica:
    """The custom server replica in a subprocess, its output in a log file."""

    def __init__(
        self, tmp_path: Path, options: CustomServerOptions, env: Optional[dict] = None, arguments: tuple = ()
    ) -> None:
        self.options = options
        number = next(_numbers)
        self.log_path = tmp_path / f"custom-{number}.log"
        self.status_path = tmp_path / f"custom-{number}.status.json"
        self.replica_id = f"replica-{number}"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            protocol.STATUS_FILE_ENV: str(self.status_path),
            protocol.REPLICA_ID_ENV: self.replica_id,
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli.server.custom", *options.to_arguments(), "--port", "0", *arguments],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._client: Optional[httpx.Client] = None

    def __enter__(self) -> "CustomReplica":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def status(self) -> Optional[ReplicaStatus]:
        return read_status(self.status_path)

    def wait_status(self, condition: Callable[[ReplicaStatus], bool], what: str, timeout: float = 60) -> ReplicaStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and condition(status):
                return status
            if self.process.poll() is not None:
                status = self.status()
                if status is not None and condition(status):
                    return status
                raise AssertionError(f"replica exited before {what} (status {status})\n--- log ---\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}\n--- log ---\n{self.log()}")

    def wait_phase(self, phase: str) -> ReplicaStatus:
        return self.wait_status(lambda status: status.phase == phase, f"phase {phase}")

    @property
    def url(self) -> str:
        status = self.wait_status(lambda s: s.port is not None, "the replica to report its port")
        return f"http://127.0.0.1:{status.port}"

    @property
    def app_url(self) -> str:
        """The custom server itself, behind the replica."""
        return f"http://127.0.0.1:{self.options.server_port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        if self._client is not None:
            self._client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(protocol.STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait_exit(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"replica still running after {timeout}s\n--- log ---\n{self.log()}") from None
