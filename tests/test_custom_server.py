"""The custom server replica (`truss_cli/server/custom/`): a real custom server (the test app,
a subprocess) behind the real replica, over real sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from conftest import wait_until_ready
from custom_server_support import CustomReplica, app_options, reserve_port  # noqa: F401 (fixture)
from truss_cli.server import protocol
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.custom.routes import RouteMap
from truss_cli.server.status import FAILED, LOADING, READY, STOPPING
from truss_cli.server_bundle import write_server_bundle

READY_NOW = {"READY_AT_ONCE": "1"}


@pytest.fixture
def replica(tmp_path: Path, reserve_port):
    with CustomReplica(tmp_path, app_options(reserve_port()), env={**READY_NOW, "ECHO_ENV": "MY_SETTING", "MY_SETTING": "42"}) as running:
        running.wait_phase(READY)
        yield running


def test_truss_routes_map_to_the_custom_servers_endpoints(replica: CustomReplica) -> None:
    client = replica.client
    predicted = client.post(protocol.PREDICT_PATH + "?verbose=1", json={"name": "Ada"})
    assert predicted.status_code == 200
    assert predicted.json()["path"] == "/predict?verbose=1"
    assert json.loads(predicted.json()["body"]) == {"name": "Ada"}
    for path in ("/v1/models/model:predict_binary", "/v1/models/other:predict"):
        assert client.post(path, content=b"x").json()["path"] == "/predict"
    assert client.get(protocol.READINESS_PATH).json() == {"ready": True}
    assert client.get("/").json() == {"alive": True}
    # Every other path reaches the custom server unchanged.
    assert client.get("/v1/chat/completions?x=1").json()["path"] == "/v1/chat/completions?x=1"
    assert client.get("/metrics").json()["path"] == "/metrics"


def test_every_answer_carries_the_replica_id_and_the_status_route_is_ours(replica: CustomReplica) -> None:
    for response in (replica.client.post(protocol.PREDICT_PATH, json={}), replica.client.get("/error"), replica.client.get("/")):
        assert response.headers[protocol.REPLICA_ID_HEADER] == replica.replica_id
    status = replica.client.get(protocol.STATUS_PATH).json()
    assert status["phase"] == READY and status["replica_id"] == replica.replica_id


def test_the_custom_server_gets_the_replicas_environment_without_its_settings(replica: CustomReplica) -> None:
    assert replica.client.post(protocol.PREDICT_PATH, json={}).json()["env"] == "42"


def test_its_own_5xx_passes_through_unchanged(replica: CustomReplica) -> None:
    response = replica.client.get("/error")
    assert response.status_code == 500
    assert response.json() == {"detail": "the custom server's own failure"}


def test_a_stream_reaches_the_client_chunk_by_chunk(replica: CustomReplica) -> None:
    app = httpx.Client(base_url=replica.app_url, timeout=30)
    with replica.client.stream("POST", protocol.PREDICT_PATH, json={"stream": 3}) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        # Each next chunk is only sent after the test has seen the previous one.
        assert next(chunks) == b"chunk 0\n"
        app.post("/release")
        assert next(chunks) == b"chunk 1\n"
        app.post("/release")
        assert next(chunks) == b"chunk 2\n"
        assert list(chunks) == []


def test_keep_alive_on_both_sides(replica: CustomReplica) -> None:
    port = int(replica.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        reader = connection.makefile("rb")
        peers = set()
        for _ in range(3):
            connection.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            status_line = reader.readline()
            assert status_line.startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            peers.add(json.loads(reader.read(length))["peer_port"])
    # One client connection served three requests, all over one connection to the custom server.
    assert len(peers) == 1


def test_an_upgrade_is_tunnelled_to_the_predict_endpoint(replica: CustomReplica) -> None:
    port = int(replica.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"GET /v1/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        reader = connection.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101")
        while reader.readline() != b"\r\n":
            pass
        connection.sendall(b"hello")
        assert reader.read(10) == b"echo:hello"


def test_a_custom_server_that_stops_listening_gives_502_naming_its_port(tmp_path: Path, reserve_port) -> None:
    port = reserve_port()
    with CustomReplica(tmp_path, app_options(port), env=READY_NOW) as replica:
        replica.wait_phase(READY)
        httpx.post(replica.app_url + "/stop-listening")
        response = replica.client.post(protocol.PREDICT_PATH, json={})
        assert response.status_code == 502
        assert response.json()["error"].startswith(f"the custom server is not answering on port {port}: ")


def test_requests_before_ready_get_503_and_the_status_says_loading(tmp_path: Path, reserve_port) -> None:
    with CustomReplica(tmp_path, app_options(reserve_port())) as replica:
        replica.wait_status(lambda status: status.phase == LOADING and status.port, "loading")
        # Listening, but its readiness endpoint answers 503: still loading.
        wait_until_ready(replica.app_url + "/alive", is_alive=lambda: replica.process.poll() is None)
        response = replica.client.post(protocol.PREDICT_PATH, json={})
        assert response.status_code == 503
        assert "not ready" in response.json()["error"]
        assert replica.status().phase == LOADING
        httpx.post(replica.app_url + "/make-ready")
        replica.wait_phase(READY)
        assert replica.client.post(protocol.PREDICT_PATH, json={}).status_code == 200


def test_an_exit_fails_the_replica_with_the_code_and_last_log_line(tmp_path: Path, reserve_port) -> None:
    with CustomReplica(tmp_path, app_options(reserve_port()), env=READY_NOW) as replica:
        replica.wait_phase(READY)
        with pytest.raises(httpx.HTTPError):
            httpx.get(replica.app_url + "/exit")
        assert replica.wait_exit() == protocol.EXIT_LOAD_FAILED
        status = replica.status()
        assert status.phase == FAILED
        assert status.summary == "the custom server exited with code 3: fatal: giving up on purpose"
        assert "app: listening on" in status.traceback  # its last lines, for the supervisor to show


def test_a_start_command_that_fails_at_once_is_explained(tmp_path: Path, reserve_port) -> None:
    options = app_options(reserve_port(), command="echo 'cannot find weights' >&2; exit 7")
    with CustomReplica(tmp_path, options) as replica:
        assert replica.wait_exit() == protocol.EXIT_LOAD_FAILED
        assert replica.status().summary == "the custom server exited with code 7: cannot find weights"
        assert "cannot find weights" in replica.log()  # its output reaches the replica's log


def test_staying_up_after_an_exit_reports_it_with_503(tmp_path: Path, reserve_port) -> None:
    options = app_options(reserve_port(), command="echo broken; exit 4")
    env = {protocol.STAY_UP_ON_LOAD_FAILURE_ENV: "1"}
    with CustomReplica(tmp_path, options, env=env) as replica:
        replica.wait_phase(FAILED)
        response = replica.client.post(protocol.PREDICT_PATH, json={})
        assert response.status_code == 503
        assert response.json()["error"] == "the custom server exited with code 4: broken"
        assert replica.client.get(protocol.STATUS_PATH).json()["phase"] == FAILED
        assert replica.stop() == 0


def test_a_port_already_taken_is_refused_before_starting(tmp_path: Path, reserve_port) -> None:
    port = reserve_port()
    with CustomReplica(tmp_path, app_options(port), env=READY_NOW) as first:
        first.wait_phase(READY)
        with CustomReplica(tmp_path, app_options(port)) as second:
            assert second.wait_exit() == protocol.EXIT_LOAD_FAILED
            assert second.status().summary == f"port {port} is already in use on this machine, before the custom server started"


def test_sigterm_drains_an_in_flight_request_then_stops_the_custom_server(tmp_path: Path, reserve_port) -> None:
    with CustomReplica(tmp_path, app_options(reserve_port()), env=READY_NOW) as replica:
        replica.wait_phase(READY)
        app = httpx.Client(base_url=replica.app_url, timeout=30)
        answers: list = []
        slow = threading.Thread(target=lambda: answers.append(replica.client.post("/slow", json={})))
        slow.start()
        app.post("/arrived")  # the slow request has reached the custom server
        replica.process.send_signal(signal.SIGTERM)
        replica.wait_phase(STOPPING)
        with pytest.raises(httpx.ConnectError):
            httpx.get(replica.url + protocol.STATUS_PATH)  # no new connections
        app.post("/release")
        slow.join(30)
        assert answers and answers[0].status_code == 200 and answers[0].json() == {"slow": "done"}
        assert replica.wait_exit() == 0
        with pytest.raises(httpx.ConnectError):
            app.get("/alive")  # the custom server was stopped too


def test_a_reserved_port_is_kept_from_others_but_the_custom_server_binds_it(reserve_port) -> None:
    # What the tests' port choice relies on (custom_server_support.reserve_port).
    port = reserve_port()
    with socket.socket() as other:
        with pytest.raises(OSError, match="Address already in use"):
            other.bind(("127.0.0.1", port))  # a server without SO_REUSEADDR
    with socket.socket() as server, socket.socket() as late:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="Address already in use"):
            late.bind(("127.0.0.1", port))  # once the custom server listens, the port is its own


def test_invalid_options_exit_2_naming_the_option(tmp_path: Path) -> None:
    options = CustomServerOptions("true", 8000, "predict", "/r", "/l")
    with CustomReplica(tmp_path, options) as replica:
        assert replica.wait_exit() == protocol.EXIT_BAD_CONFIG
        assert "--predict-endpoint must start with /" in replica.log()


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/", b"/alive"),
        (b"/?probe=1", b"/alive?probe=1"),
        (b"/v1/models/model", b"/ready"),
        (b"/v1/models/model:predict", b"/predict"),
        (b"/v1/models/abc:predict_binary?x=1", b"/predict?x=1"),
        (b"/v1/websocket", b"/predict"),
        (b"/v1/models/model/schema", b"/v1/models/model/schema"),
        (b"/v1/models/model:explain", b"/v1/models/model:explain"),
        (b"/health", b"/health"),
    ],
)
def test_route_map(target: bytes, expected: bytes) -> None:
    routes = RouteMap(CustomServerOptions("x", 8000, "/predict", "/ready", "/alive"))
    assert routes.upstream_target(target) == expected


def test_a_predict_endpoint_with_a_query_keeps_both_queries() -> None:
    routes = RouteMap(CustomServerOptions("x", 8000, "/run?mode=fast", "/ready", "/alive"))
    assert routes.upstream_target(b"/v1/models/model:predict?x=1") == b"/run?mode=fast&x=1"


def test_the_replica_needs_only_the_standard_library_and_its_bundle(tmp_path: Path) -> None:
    # A no_build image runs it on the base image's own python3, where nothing is installed:
    # no site-packages (-S), nothing from the environment (-I), only the bundle on the path.
    bundle = write_server_bundle(tmp_path / "bundle")
    imports = (
        f"import sys; sys.path.insert(0, {str(bundle)!r}); "
        "import truss_cli.server.custom.__main__, truss_cli.server.custom.serve, truss_cli.server.custom.proxy, "
        "truss_cli.server.custom.secret_files; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('truss_cli'))))"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", imports], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "truss_cli.server.custom.proxy" in result.stdout.split()
