"""The gateway between clients and real model servers: paths, balancing, retries, streaming, errors."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from gateway_support import RunningGateway
from test_server_harness import ModelServer, wait_for, write_model_dir
from truss_cli.controlplane.gateway import Denial, Replica, RoutingTable

MODEL = """
import os
import time
from pathlib import Path


class Model:
    def predict(self, model_input):
        if "release_file" in model_input:
            return self._chunks(Path(model_input["release_file"]))
        return {"replica": os.environ["TRUSS_REPLICA_ID"], "got": model_input}

    def _chunks(self, release):
        yield "first\\n"
        # The second chunk waits for the test, which has already read the first: a gateway
        # that buffered the stream would give the test nothing to react to.
        deadline = time.monotonic() + 30
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "released\\n" if release.exists() else "never released\\n"
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    model_dir = write_model_dir(tmp_path_factory.mktemp("gateway") / "m", MODEL)
    with ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r1"}) as one, ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r2"}) as two:
        one.wait_ready()
        two.wait_ready()
        yield one, two


def table_for(*servers: ModelServer, deployment: str = "dep1") -> RoutingTable:
    table = RoutingTable(park_timeout_seconds=30)
    table.set_model("m1", {"production": [(deployment, 1.0)], f"deployment/{deployment}": [(deployment, 1.0)]})
    table.set_replicas(deployment, [Replica(f"r{i + 1}", s.url) for i, s in enumerate(servers)])
    return table


def test_predict_paths_reach_the_replica_and_balance_across_both(replicas):
    with RunningGateway(table_for(*replicas)) as gw:
        seen = set()
        for i in range(10):
            response = gw.client.post("/model-m1/production/predict", json={"i": i})
            assert response.status_code == 200, response.text
            assert response.json()["got"] == {"i": i}
            assert response.headers["x-truss-replica-id"] == response.json()["replica"]
            seen.add(response.headers["x-truss-replica-id"])
        assert seen == {"r1", "r2"}
        by_deployment = gw.client.post("/model-m1/deployment/dep1/predict", json={"x": 1})
        assert by_deployment.json()["got"] == {"x": 1}
        by_host = gw.client.post("/production/predict", json={"y": 2}, headers={"Host": "model-m1.gateway.example"})
        assert by_host.status_code == 200 and by_host.json()["got"] == {"y": 2}
        # A request is counted once its answer is sent, which the client may see first: poll.
        deadline = time.monotonic() + 10
        while 'code="2xx"} 12' not in (metrics := gw.gateway.render_metrics()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 'truss_gateway_requests_total{model="m1",deployment="dep1",code="2xx"} 12' in metrics
        assert 'truss_gateway_request_duration_seconds_count{model="m1",deployment="dep1"} 12' in metrics


def test_sync_passes_any_route_with_its_query_string(replicas):
    with RunningGateway(table_for(replicas[0])) as gw:
        status = gw.client.get("/model-m1/production/sync/v1/replica/status", params={"a": "b"})
        assert status.status_code == 200
        assert status.json()["phase"] == "ready"
        readiness = gw.client.get("/model-m1/production/sync/v1/models/model")
        assert readiness.status_code == 200


def test_streamed_chunks_reach_the_client_one_by_one(replicas, tmp_path):
    release = tmp_path / "release"
    with RunningGateway(table_for(replicas[0])) as gw:
        with gw.client.stream("POST", "/model-m1/production/predict", json={"release_file": str(release)}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == "first"
            release.touch()  # only now may the model send its second chunk
            assert next(lines) == "released"


def test_unknown_model_and_target_are_404_naming_what_exists(replicas):
    with RunningGateway(table_for(replicas[0])) as gw:
        missing = gw.client.post("/model-nope/production/predict", json={})
        assert missing.status_code == 404
        assert missing.json()["error_code"] == "MODEL_NOT_FOUND" and "m1" in missing.json()["detail"]
        target = gw.client.post("/model-m1/deployment/other/predict", json={})
        assert target.status_code == 404
        assert "deployment/dep1" in target.json()["detail"] and "production" in target.json()["detail"]
        path = gw.client.post("/not/an/inference/path", json={})
        assert path.status_code == 404 and set(path.json()) == {"error", "error_code", "detail"}


def test_a_body_over_the_limit_is_413_and_never_reaches_a_replica(replicas):
    with RunningGateway(table_for(replicas[0]), max_request_bytes=1000) as gw:
        response = gw.client.post("/model-m1/production/predict", content=b"x" * 2000)
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["detail"]

        def chunked():
            for _ in range(4):
                yield b"y" * 400

        streamed = gw.client.post("/model-m1/production/predict", content=chunked())
        assert streamed.status_code == 413


def test_no_ready_replica_is_503_with_retry_after(replicas):
    table = table_for(replicas[0])
    table.set_replicas("dep1", [])
    with RunningGateway(table) as gw:
        response = gw.client.post("/model-m1/production/predict", json={})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error_code"] == "NO_REPLICA_READY"


def test_a_parked_request_is_answered_once_a_replica_is_ready(replicas):
    table = table_for(replicas[0])
    table.set_replicas("dep1", [], starting=True)
    with RunningGateway(table) as gw:
        result = {}

        def call():
            result["response"] = gw.client.post("/model-m1/production/predict", json={"parked": True})

        caller = threading.Thread(target=call)
        caller.start()
        wait_for(lambda: gw.metric('truss_gateway_requests_parked{model="m1"}') == 1, "the request to park")
        gw.on_loop(table.set_replicas, "dep1", [Replica("r1", replicas[0].url)])
        caller.join(30)
        response = result["response"]
        assert response.status_code == 200 and response.json()["got"] == {"parked": True}


def test_authorizer_answers_before_anything_else(replicas):
    async def authorize(authorization, model_id):
        if authorization is None:
            return Denial(401, "missing Authorization: Api-Key <key>")
        if authorization != "Api-Key good":
            return Denial(403, f"this key may not call model {model_id}")
        return None

    with RunningGateway(table_for(replicas[0]), authorizer=authorize) as gw:
        # An unknown model is 401 too: nobody learns which models exist without a key.
        assert gw.client.post("/model-nope/production/predict", json={}).status_code == 401
        denied = gw.client.post("/model-m1/production/predict", json={}, headers={"Authorization": "Api-Key bad"})
        assert denied.status_code == 403 and denied.json()["error_code"] == "FORBIDDEN"
        ok = gw.client.post("/model-m1/production/predict", json={"k": 1}, headers={"Authorization": "Api-Key good"})
        assert ok.status_code == 200 and ok.json()["got"] == {"k": 1}


def test_requests_go_to_the_live_replica_when_one_is_killed(tmp_path):
    model_dir = write_model_dir(tmp_path / "m", MODEL)
    with ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r1"}) as one, ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r2"}) as two:
        one.wait_ready()
        two.wait_ready()
        with RunningGateway(table_for(one, two)) as gw:
            for _ in range(4):  # keep-alive connections to both replicas in the pool
                assert gw.client.post("/model-m1/production/predict", json={}).status_code == 200
            one.stop(signal.SIGKILL)
            # The table still lists r1 (no reconciler here): every pick of r1 fails to connect
            # and is retried on r2.
            answers = [gw.client.post("/model-m1/production/predict", json={"n": n}) for n in range(10)]
            assert [a.status_code for a in answers] == [200] * 10
            assert {a.headers["x-truss-replica-id"] for a in answers} == {"r2"}
            assert gw.metric('truss_gateway_errors_total{model="m1",deployment="dep1",kind="connect"}') >= 1
