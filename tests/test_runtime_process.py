"""The process runtime (truss_cli.controlplane.runtimes.process) with real model servers:
start -> ready -> predict at the handle's URL, re-adoption by a new runtime object over the
same data dir, draining on stop, a failed load, a killed replica, a recycled pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import threading
from pathlib import Path

import httpx
import pytest

from runtime_support import build_request, runtime_settings, wait_for_phase
from truss_cli.controlplane.runtimes import pids
from truss_cli.controlplane.runtimes.base import GONE, BuildError, Handle, ReplicaSpec
from truss_cli.controlplane.runtimes.process import ProcessRuntime
from truss_cli.server import protocol
from truss_cli.server.status import FAILED, READY, STOPPING

SECRET_MODEL = """
class Model:
    def __init__(self, secrets, **kwargs):
        self._secrets = secrets

    def load(self):
        print("loading the weights")

    def predict(self, model_input):
        return {"echo": model_input, "token": self._secrets["token"], "pid": __import__("os").getpid()}
"""
SECRET_CONFIG = """
model_name: echo
secrets:
  token: null
"""


def test_a_replica_serves_outlives_its_runtime_object_and_is_stopped(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(SECRET_MODEL, SECRET_CONFIG)
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    artifact = runtime.prepare(build_request(model_dir))
    spec = ReplicaSpec("dep-1", artifact, secrets={"token": "s3cret-value"})
    handle = runtime.start(spec)
    try:
        assert handle.url is not None and handle.url.startswith("http://127.0.0.1:")
        assert wait_for_phase(runtime, handle, READY, FAILED).phase == READY
        answer = httpx.post(handle.url + protocol.PREDICT_PATH, json={"x": 1}, trust_env=False)
        assert answer.json()["echo"] == {"x": 1}
        assert answer.json()["token"] == "s3cret-value"
        assert answer.headers[protocol.REPLICA_ID_HEADER] == spec.replica_id
        server_pid = answer.json()["pid"]
        secrets_dir = Path(handle.data["dir"]) / "secrets"
        assert stat.S_IMODE((secrets_dir / "token").stat().st_mode) == 0o600

        # A restarted control plane: a new object over the same data dir finds the replica
        # and sees it ready, without starting another one.
        adopted = ProcessRuntime(runtime_settings(tmp_path / "data"))
        (found,) = adopted.list()
        assert found == handle
        assert adopted.status(found).phase == READY
        again = httpx.post(found.url + protocol.PREDICT_PATH, json={"x": 2}, trust_env=False)
        assert again.json()["pid"] == server_pid

        lines = list(adopted.logs(found))
        assert any(line.text == "loading the weights" for line in lines)
        assert all(line.at.tzinfo is not None for line in lines)
        assert "s3cret-value" not in (Path(handle.data["dir"]) / "replica.log").read_text()

        adopted.stop(found)
        assert adopted.status(found).phase == GONE
        assert adopted.list() == []
        assert not secrets_dir.exists()
        # The log outlives the replica: a failed deployment's startup log stays readable.
        assert any("replica exited with code 0" in line.text for line in adopted.logs(found))
    finally:
        runtime.stop(handle)


def test_stop_lets_an_in_flight_request_finish(make_model_dir, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    model_dir = make_model_dir(
        """
        import os, time
        from pathlib import Path

        class Model:
            def predict(self, model_input):
                gate = Path(os.environ["GATE_DIR"])
                (gate / "entered").touch()
                while not (gate / "release").exists():
                    time.sleep(0.02)
                return {"finished": model_input}
        """
    )
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    handle = runtime.start(ReplicaSpec("dep-1", runtime.prepare(build_request(model_dir)), environment={"GATE_DIR": str(gate)}))
    try:
        wait_for_phase(runtime, handle, READY)
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(handle.url + protocol.PREDICT_PATH, json=7, timeout=60, trust_env=False))
        )
        request.start()
        while not (gate / "entered").exists():
            request.join(0.02)
        stopper = threading.Thread(target=runtime.stop, args=(handle,))
        stopper.start()
        wait_for_phase(runtime, handle, STOPPING)  # draining: the request is still in flight
        (gate / "release").touch()
        request.join(60)
        stopper.join(60)
        assert answers[0].status_code == 200
        assert answers[0].json() == {"finished": 7}
        assert runtime.status(handle).phase == GONE
    finally:
        (gate / "release").touch()
        runtime.stop(handle)


def test_a_failed_load_is_observed_with_its_summary_while_the_replica_stays_up(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        class Model:
            def load(self):
                raise RuntimeError("weights are missing")

            def predict(self, model_input):
                return model_input
        """
    )
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    handle = runtime.start(ReplicaSpec("dep-1", runtime.prepare(build_request(model_dir))))
    try:
        status = wait_for_phase(runtime, handle, FAILED, READY, GONE)
        assert status.phase == FAILED
        assert status.summary is not None and status.summary.startswith("load failed: RuntimeError: weights are missing")
        assert status.traceback and "weights are missing" in status.traceback
        assert runtime.status(handle).phase == FAILED  # still up, still saying why
    finally:
        runtime.stop(handle)


def test_a_killed_replica_is_gone(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir("class Model:\n    def predict(self, model_input):\n        return model_input\n")
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    handle = runtime.start(ReplicaSpec("dep-1", runtime.prepare(build_request(model_dir))))
    try:
        wait_for_phase(runtime, handle, READY)
        status_file = json.loads((Path(handle.data["dir"]) / "status.json").read_text())
        os.kill(status_file["pid"], signal.SIGKILL)
        gone = wait_for_phase(runtime, handle, GONE)
        assert gone.exit_code == -signal.SIGKILL
        assert [found.replica_id for found in runtime.list()] == [handle.replica_id]  # until stopped
    finally:
        runtime.stop(handle)
    assert runtime.list() == []


def test_a_recycled_pid_is_neither_adopted_nor_signalled(tmp_path: Path) -> None:
    # A handle whose pid now belongs to another process (here: this test) with another start time.
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    home = tmp_path / "data" / "replicas" / "old"
    home.mkdir(parents=True)
    stale = Handle("process", "dep-1", "old", "http://127.0.0.1:1", {"pid": os.getpid(), "started": pids.start_time(os.getpid()) - 1, "dir": str(home)})
    assert runtime.status(stale).phase == GONE
    runtime.stop(stale, grace=0)  # must not signal this process's group
    assert pids.start_time(os.getpid()) is not None


def test_a_build_failure_raises_one_line_and_keeps_the_log(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, model_input):\n        return model_input\n",
        "requirements:\n  - this-package-does-not-exist-truss-test==1.0\n",
    )
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    request = build_request(model_dir)
    with pytest.raises(BuildError) as failure:
        runtime.prepare(request)
    assert "\n" not in str(failure.value)
    assert "this-package-does-not-exist-truss-test" in request.build_log.read_text()


STARTER = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from runtime_support import build_request, runtime_settings
from truss_cli.controlplane.runtimes.base import ReplicaSpec
from truss_cli.controlplane.runtimes.process import ProcessRuntime

runtime = ProcessRuntime(runtime_settings(Path(sys.argv[1])))
handle = runtime.start(ReplicaSpec("dep-1", runtime.prepare(build_request(Path(sys.argv[2])))))
print(json.dumps(handle.to_dict()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # a control plane killed without warning
"""


def test_a_replica_outlives_a_killed_control_plane(make_model_dir, tmp_path: Path) -> None:
    import subprocess
    import sys

    model_dir = make_model_dir("class Model:\n    def predict(self, model_input):\n        return {'got': model_input}\n")
    tests_dir = str(Path(__file__).parent)
    starter = subprocess.run(
        [sys.executable, "-c", STARTER, str(tmp_path / "data"), str(model_dir), tests_dir],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), tests_dir])),
    )  # fmt: skip
    assert starter.returncode == -signal.SIGKILL, starter.stderr
    started = Handle.from_dict(json.loads(starter.stdout))
    runtime = ProcessRuntime(runtime_settings(tmp_path / "data"))
    (handle,) = runtime.list()
    try:
        assert handle == started
        assert wait_for_phase(runtime, handle, READY, FAILED, GONE).phase == READY
        assert httpx.post(handle.url + protocol.PREDICT_PATH, json=3, trust_env=False).json() == {"got": 3}
    finally:
        runtime.stop(handle)
    assert runtime.status(handle).phase == GONE


KILLED_BEFORE_RECORDING = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from runtime_support import build_request, runtime_settings
from truss_cli.controlplane.runtimes import process
from truss_cli.controlplane.runtimes.base import ReplicaSpec

def die_instead(home, handle):  # the replica's process exists; its handle is not on disk yet
    print(handle.data["pid"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

process._write_handle = die_instead
runtime = process.ProcessRuntime(runtime_settings(Path(sys.argv[1])))
runtime.start(ReplicaSpec("dep-1", runtime.prepare(build_request(Path(sys.argv[2])))))
"""


def test_a_control_plane_killed_before_recording_a_replica_leaves_nothing_running(make_model_dir, tmp_path: Path) -> None:
    # What a restarted control plane cannot find (no handle.json) it can never stop: such a
    # replica must not run at all. (Seen: a rebuild's replica alive long after its test.)
    import subprocess
    import sys

    from controlplane_checks import eventually, live_processes_in

    model_dir = make_model_dir("class Model:\n    def predict(self, model_input):\n        return model_input\n")
    tests_dir = str(Path(__file__).parent)
    starter = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_RECORDING, str(tmp_path / "data"), str(model_dir), tests_dir],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), tests_dir])),
    )  # fmt: skip
    assert starter.returncode == -signal.SIGKILL, starter.stderr
    session = int(starter.stdout)
    try:
        eventually(lambda: live_processes_in([session]) == [], timeout=60)
        assert ProcessRuntime(runtime_settings(tmp_path / "data")).list() == []
        (log,) = (tmp_path / "data" / "replicas").glob("*/replica.log")
        assert "not started: the control plane that started this replica ended before recording it" in log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session, signal.SIGKILL)
