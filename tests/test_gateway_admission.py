"""The gateway's concurrency cap (autoscaling's concurrency_target) with real model servers:
a request beyond the cap waits in line and is answered when a slot frees or a replica is
added, and one that waits past the park timeout is refused with a reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_support import RunningGateway
from test_gateway import MODEL
from test_server_harness import ModelServer, wait_for, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    # The replicas take many predicts at once (their own predict_concurrency, default 1, would
    # hold a second request behind a held stream): what waits here is the gateway's doing alone.
    model_dir = write_model_dir(tmp_path_factory.mktemp("admission") / "m", MODEL,
                                "runtime:\n  predict_concurrency: 8\n")
    with ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r1"}) as one, ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r2"}) as two:
        one.wait_ready()
        two.wait_ready()
        yield one, two


def capped(server: ModelServer, park_timeout: float = 60) -> RoutingTable:
    table = RoutingTable(park_timeout_seconds=park_timeout)
    table.set_model("m1", {"production": [("dep1", 1.0)]})
    table.set_replicas("dep1", [Replica("r1", server.url)])
    table.set_concurrency("dep1", 1)
    return table


class Held:
    """A streamed predict that holds its replica's slot until `release()`."""

    def __init__(self, gw: RunningGateway, tmp_path: Path) -> None:
        self.file = tmp_path / f"release-{id(self)}"
        self.client = httpx.Client(base_url=gw.url, timeout=60)
        self.stream = self.client.stream("POST", "/model-m1/production/predict", json={"release_file": str(self.file)})
        self.response = self.stream.__enter__()
        self.chunks = self.response.iter_text()
        assert next(self.chunks).startswith("first")  # the replica holds it now

    def release(self) -> str:
        self.file.touch()
        rest = "".join(self.chunks)
        self.stream.__exit__(None, None, None)
        self.client.close()
        return rest


def call_in_thread(gw: RunningGateway, result: dict[str, Any]) -> threading.Thread:
    def call() -> None:
        with httpx.Client(base_url=gw.url, timeout=60) as client:
            result["response"] = client.post("/model-m1/production/predict", json={"waited": True})

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_request_beyond_the_cap_waits_and_is_answered_when_the_slot_frees(replicas, tmp_path: Path) -> None:
    table = capped(replicas[0])
    with RunningGateway(table) as gw:
        table.on_capacity = gw.gateway.capacity_changed
        held = Held(gw, tmp_path)
        result: dict[str, Any] = {}
        caller = call_in_thread(gw, result)
        wait_for(lambda: gw.gateway.admission.waiting("dep1") == 1, "the second request to wait in line")
        assert caller.is_alive() and not result  # waiting, not refused, while the first holds r1
        assert "released" in held.release()
        caller.join(30)
        response = result["response"]
        assert response.status_code == 200 and response.json()["got"] == {"waited": True}
        assert response.headers["x-truss-replica-id"] == "r1"


def test_a_new_replica_takes_the_waiting_request_at_once(replicas, tmp_path: Path) -> None:
    table = capped(replicas[0])
    with RunningGateway(table) as gw:
        table.on_capacity = gw.gateway.capacity_changed
        held = Held(gw, tmp_path)
        result: dict[str, Any] = {}
        caller = call_in_thread(gw, result)
        wait_for(lambda: gw.gateway.admission.waiting("dep1") == 1, "the second request to wait in line")
        # A scale-up publishes a second replica while the first still holds r1.
        gw.on_loop(table.set_replicas, "dep1", [Replica("r1", replicas[0].url), Replica("r2", replicas[1].url)])
        caller.join(30)
        response = result["response"]
        assert response.status_code == 200 and response.headers["x-truss-replica-id"] == "r2"
        assert "released" in held.release()


def test_waiting_past_the_park_timeout_is_503_naming_the_cap(replicas, tmp_path: Path) -> None:
    table = capped(replicas[0], park_timeout=1)
    with RunningGateway(table) as gw:
        held = Held(gw, tmp_path)
        try:
            response = gw.client.post("/model-m1/production/predict", json={})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            body = response.json()
            assert body["error_code"] == "NO_REPLICA_READY" and "concurrency target (1)" in body["detail"], body
        finally:
            held.release()


def test_without_a_cap_requests_do_not_wait(replicas, tmp_path: Path) -> None:
    table = capped(replicas[0])
    table.set_concurrency("dep1", 0)
    with RunningGateway(table) as gw:
        held = Held(gw, tmp_path)
        try:
            response = gw.client.post("/model-m1/production/predict", json={"free": True})
            assert response.status_code == 200 and response.json()["got"] == {"free": True}
        finally:
            held.release()
