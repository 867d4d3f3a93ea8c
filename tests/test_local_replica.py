"""The local replica supervisor (truss_cli.local.replica) with real model servers: readiness
from the status file, the log sink, identity, and whether a replica outlives its supervisor."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import EXAMPLES, REPO_ROOT
from test_server_harness import write_replica_config
from truss_cli.local.replica import Replica, ReplicaSpec
from truss_cli.server.protocol import PREDICT_PATH, READINESS_PATH
from truss_cli.supervision import ReplicaFailed


class CollectingSink:
    """A log sink that keeps what it is given (written from the supervisor's copying thread)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")


def spec_for(model_dir: Path, tmp_path: Path, **options: object) -> ReplicaSpec:
    # The test's own interpreter has the server's packages; this checkout is the bundle.
    return ReplicaSpec(
        python=Path(sys.executable),
        bundle_dir=REPO_ROOT,
        model_dir=model_dir,
        replica_config=write_replica_config(model_dir, tmp_path / "replica.json"),
        status_file=tmp_path / "status.json",
        environ=os.environ,
        **options,  # type: ignore[arg-type]
    )


def test_ready_url_comes_from_the_status_and_the_log_goes_to_the_sink(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        import sys

        class Model:
            def load(self):
                print("to stdout while loading")
                print("to stderr while loading", file=sys.stderr)

            def predict(self, model_input):
                return model_input
        """
    )
    sink = CollectingSink()
    replica = Replica(spec_for(model_dir, tmp_path), sink)
    replica.start()
    try:
        url = replica.wait_until_ready()
        assert httpx.post(url + PREDICT_PATH, json={"x": 1}).json() == {"x": 1}
    finally:
        replica.stop()
    assert not url.endswith(":0")
    assert "to stdout while loading" in sink.text()
    assert "to stderr while loading" in sink.text()


def test_a_failed_load_is_reported_with_the_servers_summary(make_model_dir, tmp_path: Path) -> None:
    model_dir = make_model_dir(
        """
        class Model:
            def load(self):
                raise RuntimeError("weights are missing")

            def predict(self, model_input):
                return model_input
        """
    )
    replica = Replica(spec_for(model_dir, tmp_path), CollectingSink())
    replica.start()
    try:
        with pytest.raises(ReplicaFailed) as failure:
            replica.wait_until_ready()
    finally:
        replica.stop()
    assert failure.value.exit_code == 1
    assert failure.value.summary is not None
    assert failure.value.summary.startswith("load failed: RuntimeError: weights are missing")
    assert failure.value.traceback and 'raise RuntimeError("weights are missing")' in failure.value.traceback


class ImpostorHandler(http.server.BaseHTTPRequestHandler):
    """Another server on the port, answering every GET as a ready model server would."""

    def do_GET(self) -> None:
        body = json.dumps({"phase": "ready", "pid": 1, "replica_id": "someone-else", "port": 1}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_port_where_another_server_answers_is_never_reported_ready(tmp_path: Path) -> None:
    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImpostorHandler)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    port = impostor.server_address[1]
    try:
        assert httpx.get(f"http://127.0.0.1:{port}{READINESS_PATH}").status_code == 200
        replica = Replica(spec_for(EXAMPLES / "hello", tmp_path, port=port), CollectingSink())
        replica.start()
        try:
            with pytest.raises(ReplicaFailed) as failure:
                replica.wait_until_ready()
        finally:
            replica.stop()
    finally:
        impostor.shutdown()
        impostor.server_close()
    assert failure.value.exit_code not in (None, 0)
    assert replica.url is None


SUPERVISOR = """
import os, sys, time
from pathlib import Path
from truss_cli.local.replica import Replica, ReplicaSpec

spec = ReplicaSpec(
    python=Path(sys.executable), bundle_dir=Path({bundle!r}), model_dir=Path({model_dir!r}),
    replica_config=Path({replica_config!r}), status_file=Path({status!r}), environ=os.environ, die_with_parent={die_with_parent},
)
replica = Replica(spec, sys.stderr.buffer)
replica.start()
print(replica.pid, replica.wait_until_ready(), flush=True)
time.sleep(600)
"""


def supervise_then_kill_the_supervisor(tmp_path: Path, die_with_parent: bool) -> tuple[int, str]:
    """Start hello under a supervisor process, SIGKILL the supervisor: (replica pid, url)."""
    script = tmp_path / "supervisor.py"
    script.write_text(
        textwrap.dedent(SUPERVISOR).format(
            bundle=str(REPO_ROOT),
            model_dir=str(EXAMPLES / "hello"),
            replica_config=str(write_replica_config(EXAMPLES / "hello", tmp_path / "replica.json")),
            status=str(tmp_path / "status.json"),
            die_with_parent=die_with_parent,
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(tmp_path / "supervisor.log", "wb") as log:
        supervisor = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=log, env=env)
    assert supervisor.stdout is not None
    line = supervisor.stdout.readline().decode()
    assert line, (tmp_path / "supervisor.log").read_text()
    pid, url = line.split()
    supervisor.kill()
    supervisor.wait()
    return int(pid), url


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_replica_without_the_parent_death_signal_outlives_its_supervisor(tmp_path: Path) -> None:
    pid, url = supervise_then_kill_the_supervisor(tmp_path, die_with_parent=False)
    try:
        assert httpx.post(url + PREDICT_PATH, json={"name": "orphan"}).json() == {"greeting": "Hello, orphan!"}
        assert is_running(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_replica_with_the_parent_death_signal_stops_with_its_supervisor(tmp_path: Path) -> None:
    pid, _url = supervise_then_kill_the_supervisor(tmp_path, die_with_parent=True)
    deadline = time.monotonic() + 60
    try:
        while is_running(pid):
            assert time.monotonic() < deadline, "the replica outlived its supervisor"
            time.sleep(0.05)
    finally:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)
