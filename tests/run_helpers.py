"""Helpers for tests that drive the `truss` CLI: `truss run` as a real subprocess, and a port
check after a server should be gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import pytest

from conftest import REPO_ROOT
from truss_cli import net
from truss_cli.errors import TrussError
from truss_cli.server.protocol import PREDICT_PATH

READY_LINE = "Model server ready at "


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    try:
        net.check_port_free(host, port)
    except TrussError:
        return False
    return True


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TRUSS_CACHE_DIR for the whole test session: environments are built once per run.

    uv's own download cache stays where it is, so a rebuild costs about a second.
    """
    path = tmp_path_factory.getbasetemp() / "truss-cache"
    path.mkdir(exist_ok=True)
    return path


class TrussRun:
    """`python -m truss_cli run MODEL_DIR --port P`, stdout and stderr captured to files.

    Port 0 by default: the server binds a free port and `truss run` prints the URL
    (`wait_for_url`). `preexec_fn` runs in the child before exec (e.g. to start it with SIGINT
    ignored, as a shell starts a background job).
    """

    _count = 0

    def __init__(
        self,
        model_dir: Path,
        cache: Path,
        logs: Path,
        port: int = 0,
        env: Optional[dict] = None,
        preexec_fn: Optional[Callable[[], Any]] = None,
    ):
        self.url: Optional[str] = None  # known once ready
        logs.mkdir(parents=True, exist_ok=True)
        TrussRun._count += 1
        self.stdout_path = logs / f"run-{TrussRun._count}.out"
        self.stderr_path = logs / f"run-{TrussRun._count}.err"
        # The worktree's code, also in the subprocess (the installed package may be another copy).
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        full_env = {**os.environ, "TRUSS_CACHE_DIR": str(cache), "PYTHONPATH": pythonpath, **(env or {})}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli", "run", str(model_dir), "--port", str(port)],
                env=full_env,
                stdout=out,
                stderr=err,
                preexec_fn=preexec_fn,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_url(self, timeout: float = 300) -> str:
        """The URL `truss run` prints once the model is ready; fails if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout.splitlines():
                if line.startswith(READY_LINE):
                    self.url = line[len(READY_LINE):].split()[0]
                    return self.url
            if self.process.poll() is not None:
                raise AssertionError(f"truss run exited with {self.process.returncode}:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"truss run printed no URL in {timeout}s:\n{self.stdout}\n{self.stderr}")

    def wait_exit(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"truss run did not exit:\n{self.stdout}\n{self.stderr}") from None

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait_exit(30)

    def kill(self) -> None:
        """Last resort for a test that failed half-way (the server dies with it, on Linux)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    @property
    def port(self) -> int:
        assert self.url is not None, "not ready yet"
        return int(self.url.rsplit(":", 1)[1])

    def predict(self, payload: dict) -> httpx.Response:
        assert self.url is not None, "not ready yet"
        return httpx.post(self.url + PREDICT_PATH, json=payload, timeout=60)
