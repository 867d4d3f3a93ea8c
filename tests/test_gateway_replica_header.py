"""Which replica id a client sees in `x-truss-replica-id`: always the gateway's (the control
plane's replica id, Replica.id), whatever the model server itself sends. On the process and
Docker runtimes the two are the same; on Kubernetes the server's own is its pod's name (every
pod of a Deployment shares one template), so relaying it would show an id nothing else in the
control plane knows. A real model server that names itself differently, behind the gateway."""

from __future__ import annotations

import pytest

from gateway_support import RunningGateway
from test_server_harness import ModelServer, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable

MODEL = """
class Model:
    def predict(self, model_input):
        return {"ok": True}
"""


@pytest.fixture(scope="module")
def pod_server(tmp_path_factory):
    model_dir = write_model_dir(tmp_path_factory.mktemp("replica-header") / "m", MODEL)
    # As on Kubernetes: the server's id is its pod's name, not the control plane's replica id.
    with ModelServer(model_dir, env={"TRUSS_REPLICA_ID": "truss-deployment-d7p3z1wb-x2k9q"}) as server:
        server.wait_ready()
        yield server


def test_the_client_sees_the_control_planes_replica_id_not_the_servers_own(pod_server) -> None:
    routing = RoutingTable(park_timeout_seconds=30)
    routing.set_model("m1", {"production": [("dep1", 1.0)]})
    routing.set_replicas("dep1", [Replica("r-claim", pod_server.url)])
    with RunningGateway(routing) as gw:
        answer = gw.client.post("/model-m1/production/predict", json={})
        assert answer.status_code == 200, answer.text
        assert answer.headers.get_list("x-truss-replica-id") == ["r-claim"]
