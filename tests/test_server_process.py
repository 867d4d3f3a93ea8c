"""The model server as a process: its arguments, signals, and startup errors.

What a replica may import is checked from a built bundle in test_server_bundle.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from conftest import REPO_ROOT
from test_server_harness import ModelServer, start_ready

# What runs inside every replica must not load the CLI's dependencies.
CLI_SIDE_MODULES = ["typer", "rich", "docker", "watchfiles", "httpx"]

ECHO = """
class Model:
    def predict(self, model_input):
        return model_input
"""


REPORTS_MODULES = f"""
import sys


class Model:
    def predict(self, model_input):
        return [name for name in {CLI_SIDE_MODULES!r} if name in sys.modules]
"""


def test_a_serving_replica_has_not_loaded_the_cli_side(tmp_path):
    # After uvicorn, FastAPI and a request have gone through, not only after the import.
    with start_ready(tmp_path / "m", REPORTS_MODULES) as server:
        response = server.predict({})
    assert response.status_code == 200
    assert response.json() == []


def test_help_explains_the_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server", "--help"], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, check=True,
    )
    assert "MODEL_DIR" in out.stdout and "--port" in out.stdout and "--host" in out.stdout


def test_sigterm_stops_the_server_cleanly(tmp_path):
    with start_ready(tmp_path / "echo", ECHO) as server:
        assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.log()
    assert "Stopped on SIGTERM" in server.log()


def test_sigint_stops_the_server_without_a_traceback(tmp_path):
    with start_ready(tmp_path / "echo", ECHO) as server:
        assert server.stop(signal.SIGINT) == 0
    assert "KeyboardInterrupt" not in server.log()


def test_invalid_config_exits_2_naming_the_file_and_key(make_model_dir):
    with ModelServer(make_model_dir(ECHO, "runtime:\n  predict_concurrency: two\n")) as server:
        assert server.wait_exit() == 2
    log = server.log()
    assert "config.yaml" in log and "runtime.predict_concurrency" in log


MARKS_LOAD = """
class Model:
    def __init__(self, data_dir):
        self.marker = data_dir / "load-ran"

    def load(self):
        self.marker.touch()

    def predict(self, model_input):
        return model_input
"""


def test_a_taken_port_exits_non_zero_without_loading_the_model(make_model_dir):
    model_dir = make_model_dir(MARKS_LOAD, files={"data/.keep": ""})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "truss_cli.server", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode != 0
    assert "address already in use" in done.stderr.lower()
    # The model only starts loading once the server listens: no (maybe long) load() for nothing.
    assert not (model_dir / "data" / "load-ran").exists()
