"""A change to the routing table takes effect on the very next request.

The table keeps each target's resolved route between changes (a predict costs two dict
lookups instead of building the route again); every change must drop what it kept. Each step
below sends predicts first, so a route is kept, then changes the table and expects the next
predict to follow the change, through a real gateway to real model servers.
"""

from __future__ import annotations

import pytest

from gateway_support import RunningGateway
from test_server_harness import ModelServer, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable

MODEL = """
import os


class Model:
    def predict(self, model_input):
        return {"replica": os.environ["TRUSS_REPLICA_ID"]}
"""

PREDICT = "/model-m1/production/predict"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    model_dir = write_model_dir(tmp_path_factory.mktemp("route-changes") / "m", MODEL)
    with ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r1"}) as one, ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "r2"}) as two:
        one.wait_ready()
        two.wait_ready()
        yield one, two


def answered_by(gw: RunningGateway, times: int = 4) -> set[str]:
    seen = set()
    for _ in range(times):
        response = gw.client.post(PREDICT, json={})
        assert response.status_code == 200, response.text
        seen.add(response.json()["replica"])
    return seen


def test_every_table_change_applies_to_the_next_predict(replicas):
    one, two = replicas
    table = RoutingTable(park_timeout_seconds=5)
    table.set_model("m1", {"production": [("dep1", 1.0)]})
    table.set_replicas("dep1", [Replica("r1", one.url), Replica("r2", two.url)])
    with RunningGateway(table) as gw:
        assert answered_by(gw) == {"r1", "r2"}

        gw.on_loop(table.set_replicas, "dep1", [Replica("r2", two.url)])  # r1 left
        assert answered_by(gw) == {"r2"}

        # Promotion: production now goes to dep2, served by r1 only.
        gw.on_loop(table.set_replicas, "dep2", [Replica("r1", one.url)])
        gw.on_loop(table.set_model, "m1", {"production": [("dep2", 1.0)]})
        assert answered_by(gw) == {"r1"}

        gw.on_loop(table.set_inactive, "dep2", "deployment dep2 is inactive; activate it")
        response = gw.client.post(PREDICT, json={})
        assert response.status_code == 404, response.text
        assert "dep2 is inactive" in response.text
        gw.on_loop(table.set_inactive, "dep2", None)
        assert answered_by(gw) == {"r1"}

        # A cap on the deployment reaches the route a request takes: with one slot per
        # replica, sequential predicts still pass (the cap is not a refusal).
        gw.on_loop(table.set_concurrency, "dep2", 1)
        assert answered_by(gw) == {"r1"}

        gw.on_loop(table.keep_only, ["dep1"])  # dep2 deleted: no replica left to take it
        response = gw.client.post(PREDICT, json={})
        assert response.status_code == 503, response.text

        gw.on_loop(table.set_model, "m1", {"production": [("dep1", 1.0)]})
        assert answered_by(gw) == {"r2"}
        gw.on_loop(table.remove_model, "m1")
        response = gw.client.post(PREDICT, json={})
        assert response.status_code == 404, response.text
        assert "MODEL_NOT_FOUND" in response.text


def test_a_restarted_control_planes_gateway_parks_requests_until_its_first_publish(replicas):
    """A control plane's table starts empty: until the reconciler's first tick lands, a
    request parks (instead of MODEL_NOT_FOUND for a model that exists) and is served by it;
    after it, an unknown model is unknown at once."""
    import concurrent.futures

    from controlplane_checks import eventually
    from truss_cli.controlplane.tick_routing import Routing

    one, _ = replicas
    table = RoutingTable(park_timeout_seconds=30, await_first_publish=True)
    with RunningGateway(table) as gw, concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(gw.client.post, PREDICT, json={})
        eventually(lambda: gw.gateway.metrics.parked["m1"] == 1)  # it waits; it was not refused
        first = Routing(seq=1, models={"m1": {"production": [("dep1", 1.0)]}},
                        replicas={"dep1": ([Replica("r1", one.url)], False)})
        gw.on_loop(first.apply_to, table)
        answer = waiting.result(timeout=30)
        assert answer.status_code == 200 and answer.json() == {"replica": "r1"}, answer.text
        unknown = gw.client.post("/model-nope/production/predict", json={})
        assert unknown.status_code == 404 and "MODEL_NOT_FOUND" in unknown.text, unknown.text
