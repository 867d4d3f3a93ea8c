"""A reconciler tick's routing follows the states that same tick wrote: a real store (SQLite),
the process runtime with a real replica whose load() fails, the gateway's real routing table;
`Reconciler.tick()` called directly, so no timing decides which tick publishes what.

Seen before the fix: the tick that marks a deployment DEPLOY_FAILED built its targets from the
rows it read at its start, so production still routed to that deployment (now with no replica
and not starting): a predict sent before the next tick got a bare 503 "no replica ... is ready"
instead of the ENVIRONMENT_EMPTY that lets `truss predict` name the failure and its cause.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runtime_support import build_request, runtime_settings
from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.gateway.routes import UnknownTarget
from truss_cli.controlplane.reconciler import Reconciler
from truss_cli.controlplane.runtimes.base import Handle
from truss_cli.controlplane.runtimes.process import ProcessRuntime
from truss_cli.controlplane.store import Store, states
from truss_cli.controlplane.tick_routing import Routing

FAILING_LOAD = """
class Model:
    def load(self):
        raise RuntimeError("the weights are missing")

    def predict(self, request):
        return request
"""


def test_the_tick_that_marks_a_deployment_failed_stops_routing_production_to_it(make_model_dir, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runtime = ProcessRuntime(runtime_settings(data_dir))
    with Store.open(data_dir) as store:
        model = store.models.create("broken")
        # As a push creates it: production once ACTIVE, if production still serves nothing then.
        deployment = store.deployments.create(model.id, config={"production_if_empty": True},
                                              status=states.DEPLOYING, first_becomes_production=False)
        artifact = runtime.prepare(build_request(make_model_dir(FAILING_LOAD), deployment.id))
        store.deployments.set_build_artifact(deployment.id, artifact.to_dict())
        reconciler = Reconciler(store, runtime, RoutingTable())
        try:
            deadline = time.monotonic() + 300
            while True:
                routing = reconciler.tick()
                found = store.deployments.get_by_id(deployment.id)
                if found.status == states.DEPLOY_FAILED:
                    break
                # Until then, requests for production wait for it (it is first in line).
                assert routing.models[model.id]["production"] == [(deployment.id, 1.0)], routing.models
                assert time.monotonic() < deadline, found  # only stops a hang
                time.sleep(0.05)
        finally:
            for row in store.replicas.list():
                runtime.stop(Handle.from_dict(dict(row.handle)), 0)
        assert "the weights are missing" in (found.status_detail or ""), found

    answer = asyncio.run(_production_of(routing, model.id))
    assert isinstance(answer, UnknownTarget) and answer.error_code == "ENVIRONMENT_EMPTY", answer


async def _production_of(routing: Routing, model_id: str) -> object:
    """What the gateway answers for production once it routes by `routing`."""
    table = RoutingTable()
    routing.apply_to(table)
    return await table.resolve(model_id, "production")
