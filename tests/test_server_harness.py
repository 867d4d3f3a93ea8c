"""A real model server in a subprocess, for the test_server_* modules; and its own checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

import httpx

from conftest import REPO_ROOT, free_port, wait_until_ready

READY_PATH = "/v1/models/model"
PREDICT_PATH = "/v1/models/model:predict"


def write_model_dir(root: Path, model_py: str, config_yaml: str = "", files: Optional[dict] = None) -> Path:
    """A model directory: config.yaml, model/__init__.py, model/model.py and `files`."""
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(textwrap.dedent(config_yaml))
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "model.py").write_text(textwrap.dedent(model_py))
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(content))
    return root


class ModelServer:
    """`python -m truss_cli.server MODEL_DIR` on a free port, output captured to a log file."""

    def __init__(self, model_dir: Path, env: Optional[dict] = None) -> None:
        self.model_dir = model_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = model_dir.parent / f"{model_dir.name}-{self.port}.log"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "truss_cli.server", str(model_dir), "--host", "127.0.0.1", "--port", str(self.port)],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> "ModelServer":
        wait_until_ready(self.url + READY_PATH, timeout=timeout, is_alive=self.alive)
        return self

    def wait_live(self, timeout: float = 60) -> None:
        wait_until_ready(self.url + "/", timeout=timeout, is_alive=self.alive)

    def predict(self, json=None, **kwargs) -> httpx.Response:
        return self.client.post(PREDICT_PATH, json=json, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait_exit(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)


def start_ready(root: Path, model_py: str, config_yaml: str = "", files: Optional[dict] = None, env=None) -> ModelServer:
    server = ModelServer(write_model_dir(root, model_py, config_yaml, files), env=env)
    try:
        return server.wait_ready()
    except BaseException:
        print(server.log())
        server.stop()
        raise


ECHO = """
class Model:
    def predict(self, model_input):
        return model_input
"""


def test_server_package_imports_nothing_from_the_cli_side():
    forbidden = ["typer", "rich", "docker", "watchfiles", "httpx", "truss_cli.cli"]
    code = (
        "import sys, truss_cli.server, truss_cli.server.__main__, truss_cli.server.serve, truss_cli.server.app\n"
        f"print([m for m in {forbidden!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"


def test_help_explains_the_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server", "--help"], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, check=True,
    )
    assert "MODEL_DIR" in out.stdout and "--port" in out.stdout and "--host" in out.stdout


def test_sigterm_stops_the_server_cleanly(tmp_path):
    server = start_ready(tmp_path / "echo", ECHO)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 20
    assert "Traceback" not in server.log()


def test_sigint_stops_the_server_without_a_traceback(tmp_path):
    server = start_ready(tmp_path / "echo", ECHO)
    assert server.stop(signal.SIGINT) == 0
    assert "KeyboardInterrupt" not in server.log()


def test_invalid_config_exits_2_naming_the_file_and_key(tmp_path):
    model_dir = write_model_dir(tmp_path / "bad", ECHO, "runtime:\n  predict_concurrency: two\n")
    server = ModelServer(model_dir)
    assert server.wait_exit() == 2
    log = server.log()
    assert "config.yaml" in log and "runtime.predict_concurrency" in log
