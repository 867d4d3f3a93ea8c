"""A real model server in a subprocess, for the tests that need one (no tests of its own).

`ModelServer` is a context manager: leaving the block always stops the process, also when
the test failed half-way, so a failing test never leaves a server running. The server binds
port 0 and the harness learns the port from the server's status file, as a supervisor does:
no port is ever guessed.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import httpx

from conftest import REPO_ROOT, wait_until_ready, write_model_dir
from truss_cli.config import load_config
from truss_cli.config_to_replica import replica_config_for
from truss_cli.server.protocol import METRICS_PATH, PREDICT_PATH, READINESS_PATH, REPLICA_CONFIG_ENV, STATUS_FILE_ENV
from truss_cli.server.status import ReplicaStatus, read_status

__all__ = ["ModelServer", "start_ready", "wait_for", "write_model_dir", "write_replica_config"]

_numbers = itertools.count()


def write_replica_config(model_dir: Path, path: Path) -> Path:
    """The replica config of `model_dir`'s config.yaml, as `truss run` writes it."""
    config = load_config(model_dir).config
    path.write_text(replica_config_for(config, secret_values=True).to_json(), encoding="utf-8")
    return path


class ModelServer:
    """`python -m truss_cli.server MODEL_DIR --port 0`, output captured to a log file.

    The replica config is written from the model directory's config.yaml, as `truss run`
    does, unless `replica_config` names one.
    """

    def __init__(
        self, model_dir: Path, env: Optional[dict] = None, args: tuple = (), replica_config: Optional[Path] = None
    ) -> None:
        self.model_dir = model_dir
        name = f"{model_dir.name}-server-{next(_numbers)}"
        self.log_path = model_dir.parent / f"{name}.log"
        self.status_path = model_dir.parent / f"{name}.status.json"
        if replica_config is None:
            replica_config = write_replica_config(model_dir, model_dir.parent / f"{name}.replica.json")
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            STATUS_FILE_ENV: str(self.status_path),
            REPLICA_CONFIG_ENV: str(replica_config),
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli.server", str(model_dir), "--host", "127.0.0.1", "--port", "0", *args],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._port: Optional[int] = None
        self._client: Optional[httpx.Client] = None

    def status(self) -> Optional[ReplicaStatus]:
        """The server's status file as it is now (None before the server wrote one)."""
        return read_status(self.status_path)

    def wait_status(self, condition: Callable[[ReplicaStatus], bool], what: str, timeout: float = 60) -> ReplicaStatus:
        """The first status satisfying `condition`; fails (with the log) if the server exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status is not None and condition(status):
                return status
            if not self.alive():
                status = self.status()  # written just before exiting?
                if status is not None and condition(status):
                    return status
                raise AssertionError(f"server exited before {what} (status {status})\n--- server log ---\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}\n--- server log ---\n{self.log()}")

    @property
    def port(self) -> int:
        """The port the server bound (waits until it listens)."""
        if self._port is None:
            status = self.wait_status(lambda s: s.port is not None, "the server to report its port")
            self._port = status.port
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=30)
        return self._client

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> "ModelServer":
        try:
            wait_until_ready(self.url + READINESS_PATH, timeout=timeout, is_alive=self.alive)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{self.log()}") from None
        return self

    def wait_live(self, timeout: float = 60) -> None:
        wait_until_ready(self.url + "/", timeout=timeout, is_alive=self.alive)

    def predict(self, json=None, **kwargs) -> httpx.Response:
        return self.client.post(PREDICT_PATH, json=json, **kwargs)

    def metric(self, line_prefix: str) -> float:
        """The value of the first /metrics line starting with `line_prefix` (0 if absent)."""
        for line in self.client.get(METRICS_PATH).text.splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[str]:
        """The log's lines without the timestamp/level/logger prefix of the server's own lines."""
        return [line.split("truss.server: ", 1)[-1] for line in self.log().splitlines()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self._client is not None:
            self._client.close()
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit code; a server still running after `timeout` is killed and the test fails."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"server still running after {timeout}s; killed\n--- server log ---\n{self.log()}") from None


def start_ready(root: Path, model_py: str, config_yaml: str = "", files: Optional[dict] = None, env=None) -> ModelServer:
    """Write a model directory at `root`, serve it and wait until it is ready."""
    server = ModelServer(write_model_dir(root, model_py, config_yaml, files), env=env)
    try:
        return server.wait_ready()
    except BaseException:
        server.stop()
        raise


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `condition` until it holds; fail naming `what` if it never does (a safety net, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
