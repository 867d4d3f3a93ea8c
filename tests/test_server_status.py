"""The replica status a supervisor reads: the status file, the status route, the replica id
header, the bound port, and the server that stays up after a failed load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from test_server_harness import ModelServer, write_replica_config
from truss_cli.server.protocol import (
    PREDICT_PATH,
    READINESS_PATH,
    REPLICA_ID_ENV,
    REPLICA_ID_HEADER,
    SCHEMA_PATH,
    STATUS_PATH,
    STAY_UP_ON_LOAD_FAILURE_ENV,
)
from truss_cli.server.reporter import StatusReporter
from truss_cli.server.status import FAILED, LOADING, READY, STOPPING, read_status

GATE_HELPER = """
import os
import time


def wait_for_gate(path, seconds=60):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
"""

GATED_LOAD = GATE_HELPER + """

class Model:
    def __init__(self, data_dir):
        self.data_dir = data_dir

    def load(self):
        wait_for_gate(self.data_dir / "go")
        if (self.data_dir / "fail").exists():
            raise RuntimeError("weights missing 5c2e")

    def predict(self, model_input):
        return "ok"
"""

FAILING_LOAD = """
class Model:
    def load(self):
        raise RuntimeError("weights missing 5c2e")

    def predict(self, model_input):
        return model_input
"""

ECHO = """
class Model:
    def predict(self, model_input):
        return model_input
"""


def test_the_status_file_and_route_follow_loading_ready_and_stopping(make_model_dir):
    model_dir = make_model_dir(GATED_LOAD, files={"data/.keep": ""})
    with ModelServer(model_dir) as server:
        loading = server.wait_status(lambda s: s.phase == LOADING, "phase loading")
        assert loading.pid == server.process.pid and loading.port == server.port
        assert loading.summary is None and loading.traceback is None
        assert server.client.get(STATUS_PATH).json()["phase"] == LOADING  # the route answers while loading
        assert server.client.get(READINESS_PATH).status_code == 503
        (model_dir / "data" / "go").touch()
        ready = server.wait_status(lambda s: s.phase == READY, "phase ready")
        assert ready.port == server.port
        assert server.client.get(READINESS_PATH).status_code == 200
        assert server.client.get(STATUS_PATH).json() == {
            "phase": READY, "pid": server.process.pid, "port": server.port,
            "replica_id": None, "summary": None, "traceback": None,
        }
        assert server.stop(signal.SIGTERM) == 0
    assert server.status().phase == STOPPING


def test_a_failed_load_is_in_the_status_with_summary_and_traceback(make_model_dir):
    with ModelServer(make_model_dir(FAILING_LOAD)) as server:
        assert server.wait_exit() == 1
    status = server.status()
    assert status.phase == FAILED
    # The same one-liner the log ends with, so a supervisor need not parse the log.
    assert status.summary == server.log_lines()[-1]
    assert status.summary.startswith("load failed: RuntimeError: weights missing 5c2e (model/model.py, line 4)")
    assert status.traceback.startswith("Traceback")
    assert 'model/model.py", line 4, in load' in status.traceback
    assert status.traceback.endswith("RuntimeError: weights missing 5c2e")
    assert str(REPO_ROOT / "truss_cli") not in status.traceback


def test_a_model_definition_mistake_is_a_summary_without_traceback(make_model_dir):
    with ModelServer(make_model_dir("class Other:\n    pass\n")) as server:
        assert server.wait_exit() == 1
    status = server.status()
    assert status.phase == FAILED and status.traceback is None
    assert status.summary == "load failed: model/model.py: no class named 'Model' (config.yaml key model_class_name)"


def test_an_invalid_replica_config_is_a_failed_status_naming_the_field(make_model_dir, tmp_path):
    replica_config = tmp_path / "replica.json"
    replica_config.write_text('{"format": 1, "predict_concurrency": 0}')
    with ModelServer(make_model_dir(ECHO), replica_config=replica_config) as server:
        assert server.wait_exit() == 2
    status = server.status()
    assert status.phase == FAILED and status.port is None
    assert "predict_concurrency" in status.summary


def test_a_taken_port_is_a_failed_status_saying_so(make_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with ModelServer(make_model_dir(ECHO), args=("--port", str(port))) as server:
            assert server.wait_exit() != 0
    assert server.status().phase == FAILED
    assert server.status().summary.lower() == f"cannot listen on 127.0.0.1:{port}: address already in use"


def test_an_unwritable_status_file_is_refused_naming_it(make_model_dir, tmp_path):
    status_file = tmp_path / "no-such-dir" / "status.json"
    model_dir = make_model_dir(ECHO)
    replica_config = write_replica_config(model_dir, tmp_path / "replica.json")
    done = subprocess.run(
        [
            sys.executable, "-m", "truss_cli.server", str(model_dir), "--replica-config", str(replica_config),
            "--port", "0", "--status-file", str(status_file),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot write the status file {status_file}" in done.stderr


def test_port_0_binds_a_free_port_and_says_which(make_model_dir):
    with ModelServer(make_model_dir(ECHO)) as server:
        server.wait_ready()
        assert server.port != 0
        assert server.client.get(STATUS_PATH).json()["port"] == server.port
        assert any(
            line.startswith("Serving ") and f" on http://127.0.0.1:{server.port} " in line for line in server.log_lines()
        )


def test_every_response_names_the_replica(make_model_dir):
    with ModelServer(make_model_dir(ECHO), env={REPLICA_ID_ENV: "replica-7f3a"}) as server:
        server.wait_ready()
        responses = [
            server.client.get(READINESS_PATH),
            server.client.post(PREDICT_PATH, json={"x": 1}),
            server.client.post(PREDICT_PATH, content=b"not json"),  # an error answer too
            server.client.get(SCHEMA_PATH),
            server.client.get(STATUS_PATH),
            server.client.get("/no/such/route"),
        ]
        status = server.client.get(STATUS_PATH).json()
    assert [r.headers.get(REPLICA_ID_HEADER) for r in responses] == ["replica-7f3a"] * len(responses)
    assert [r.status_code for r in responses] == [200, 200, 400, 404, 200, 404]
    assert status["replica_id"] == "replica-7f3a" and server.status().replica_id == "replica-7f3a"


def test_without_a_replica_id_no_header_is_sent(make_model_dir):
    with ModelServer(make_model_dir(ECHO), env={REPLICA_ID_ENV: ""}) as server:
        server.wait_ready()
        assert REPLICA_ID_HEADER not in server.client.get(READINESS_PATH).headers


@pytest.mark.parametrize("how", ["env", "argument"])
def test_stay_up_mode_serves_the_failure_until_stopped(make_model_dir, how):
    model_dir = make_model_dir(GATED_LOAD, files={"data/.keep": "", "data/fail": ""})
    env, args = ({STAY_UP_ON_LOAD_FAILURE_ENV: "1"}, ()) if how == "env" else ({}, ("--stay-up-on-load-failure",))
    with ModelServer(model_dir, env=env, args=args) as server:
        server.wait_status(lambda s: s.phase == LOADING, "phase loading")
        (model_dir / "data" / "go").touch()
        failed = server.wait_status(lambda s: s.phase == FAILED, "phase failed")
        assert server.alive()
        expected = {"error": "model failed to load: RuntimeError: weights missing 5c2e (model/model.py, line 19)"}
        readiness = server.client.get(READINESS_PATH)
        assert (readiness.status_code, readiness.json()) == (503, expected)
        predict = server.predict({})
        assert (predict.status_code, predict.json()) == (503, expected)
        route = server.client.get(STATUS_PATH).json()
        assert route["phase"] == FAILED and route["summary"] == failed.summary
        assert "RuntimeError: weights missing 5c2e" in route["traceback"]
        assert server.stop(signal.SIGTERM) == 0
    stopped = server.status()
    # Stopping keeps the reason, for whoever looks after the process is gone.
    assert stopped.phase == STOPPING and stopped.summary == failed.summary


def test_a_stopping_replica_never_reports_ready_again(tmp_path):
    # load() may finish during the drain; the status must still say the replica is going away.
    reporter = StatusReporter(tmp_path / "status.json", replica_id="r1")
    reporter.begin()
    reporter.enter(LOADING, port=4321)
    reporter.enter(STOPPING)
    reporter.enter(READY)
    status = read_status(tmp_path / "status.json")
    assert (status.phase, status.port, status.replica_id) == (STOPPING, 4321, "r1")
    assert reporter.current == status
