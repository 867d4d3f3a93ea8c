"""The model server as a process: its arguments, signals, and startup errors.

What a replica may import is checked from a built bundle in test_server_bundle.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import REPO_ROOT
from test_server_harness import ModelServer, start_ready, wait_for, write_replica_config
from truss_cli.server.protocol import REPLICA_CONFIG_ENV
from truss_cli.server.status import STOPPING

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


REPORTS_FRAMEWORKS = """
import sys


class Model:
    def predict(self, model_input):
        return sorted(name for name in ("pydantic", "fastapi") if name in sys.modules)
"""


def test_the_server_imports_no_pydantic_or_fastapi_of_its_own(tmp_path):
    # They belong to the model, at whatever version its requirements pin (pydantic 1 or 2):
    # the server must not have loaded either before the model did.
    with start_ready(tmp_path / "m", REPORTS_FRAMEWORKS) as server:
        response = server.predict({})
    assert response.status_code == 200
    assert response.json() == []


def test_help_explains_the_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server", "--help"], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, check=True,
    )
    for argument in ("MODEL_DIR", "--replica-config", "--port", "--host", "--status-file", "--replica-id", "--stay-up-on-load-failure"):
        assert argument in out.stdout


def test_a_port_out_of_range_is_refused_naming_it():
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server", "model", "--port", "70000"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "--port must be between 0 and 65535, not 70000" in out.stderr


def test_sigterm_stops_the_server_cleanly(tmp_path):
    with start_ready(tmp_path / "echo", ECHO) as server:
        assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.log()
    assert "Stopped on SIGTERM" in server.log()


def test_sigint_stops_the_server_without_a_traceback(tmp_path):
    with start_ready(tmp_path / "echo", ECHO) as server:
        assert server.stop(signal.SIGINT) == 0
    assert "KeyboardInterrupt" not in server.log()


def test_without_a_replica_config_the_server_says_what_to_give(make_model_dir):
    env = {key: value for key, value in os.environ.items() if key != REPLICA_CONFIG_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "truss_cli.server", str(make_model_dir(ECHO)), "--port", "0"],
        env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert f"no replica config: give --replica-config PATH or set {REPLICA_CONFIG_ENV}" in out.stderr


@pytest.mark.parametrize(
    "content,problem",
    [
        ("{not json", "not valid JSON"),
        ('{"format": 99}', "format 99, this server reads format 1"),
        ('{"format": 1, "predict_concurrency": "two"}', "predict_concurrency must be a whole number >= 1"),
    ],
)
def test_an_unusable_replica_config_exits_2_naming_the_file(make_model_dir, tmp_path, content, problem):
    replica_config = tmp_path / "replica.json"
    replica_config.write_text(content)
    with ModelServer(make_model_dir(ECHO), replica_config=replica_config) as server:
        assert server.wait_exit() == 2
    assert f"error: {replica_config}: {problem}" in server.log()


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
    replica_config = write_replica_config(model_dir, model_dir.parent / "replica.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "truss_cli.server", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), REPLICA_CONFIG_ENV: str(replica_config)},
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode != 0
    assert "address already in use" in done.stderr.lower()
    # The model only starts loading once the server listens: no (maybe long) load() for nothing.
    assert not (model_dir / "data" / "load-ran").exists()


HELD_PREDICT = """
import os
import time


class Model:
    def __init__(self, data_dir):
        self.data_dir = data_dir

    def predict(self, model_input):
        (self.data_dir / "predict-started").touch()
        # Held until the test has seen the server stop accepting (at most 60 s, so a broken
        # test fails rather than hangs): the predict is in flight for as long as that takes.
        deadline = time.monotonic() + 60
        while not (self.data_dir / "finish").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        # Then 3 s more of work, inside the drain: a drain shorter than that would cut it off.
        time.sleep(3)
        return {"finished": model_input}
"""


def test_sigterm_refuses_new_connections_and_lets_an_in_flight_predict_finish(tmp_path):
    with start_ready(tmp_path / "m", HELD_PREDICT, files={"data/.keep": ""}) as server:
        data = server.model_dir / "data"
        answers: list = []
        in_flight = threading.Thread(target=lambda: answers.append(server.predict("slow")))
        in_flight.start()
        try:
            wait_for(lambda: (data / "predict-started").exists(), "the predict to start")
            server.process.send_signal(signal.SIGTERM)
            # "stopping" is written once the server has closed its listening socket.
            server.wait_status(lambda s: s.phase == STOPPING, "phase stopping")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
            assert server.alive()  # still draining
        finally:
            (data / "finish").touch()
            in_flight.join()
        assert server.wait_exit() == 0
    (answer,) = answers
    assert (answer.status_code, answer.json()) == (200, {"finished": "slow"})
    assert "Stopped on SIGTERM" in server.log() and "Traceback" not in server.log()
