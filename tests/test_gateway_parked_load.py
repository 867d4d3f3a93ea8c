"""Requests parked at the gateway while a deployment wakes are that deployment's load (what
the autoscaler reads from `Gateway.load`), not only a per-model gauge: a burst that arrives at
zero asks for as many replicas as it needs on the next tick. Real sockets, a real replica."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from gateway_support import RunningGateway
from test_server_harness import ModelServer, wait_for, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable

MODEL = """
class Model:
    def predict(self, model_input):
        return {"ok": True}
"""

BURST = 5


def taken(gw: RunningGateway) -> dict[str, float]:
    """The load meter's averages since its last take, read on the gateway's loop."""
    result: dict[str, Any] = {}
    gw.on_loop(lambda: result.update(gw.gateway.load.take()))
    return result


def test_requests_parked_on_a_waking_deployment_are_its_load_until_a_replica_answers(tmp_path) -> None:
    table = RoutingTable(park_timeout_seconds=60)
    # Production splits between the previous deployment (nothing ready, not starting) and a
    # waking one: the parked requests are the waking one's load.
    table.set_model("m1", {"production": [("old", 0.2), ("waking", 0.8)]}, name="hello")
    table.set_replicas("waking", [], starting=True)
    answers: list[int] = []
    with RunningGateway(table) as gw:
        def call() -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as client:
                answers.append(client.post("/model-m1/production/predict", json={}).status_code)

        threads = [threading.Thread(target=call) for _ in range(BURST)]
        for thread in threads:
            thread.start()
        wait_for(lambda: gw.metric('truss_gateway_requests_parked{model="m1"}') == BURST, "the burst to park")
        taken(gw)  # from here on every request of the burst waits the whole span
        load = taken(gw)
        assert set(load) == {"waking"}, load
        assert load["waking"] == BURST or abs(load["waking"] - BURST) < 1e-6, load

        model_dir = write_model_dir(tmp_path / "m", MODEL)
        with ModelServer(model_dir) as server:
            server.wait_ready()
            gw.on_loop(table.set_replicas, "waking", [Replica("r1", server.url)])
            for thread in threads:
                thread.join(60)
        assert answers == [200] * BURST
        taken(gw)
        assert taken(gw) == {}  # answered: no load left behind
