"""Requests waiting in a deployment's line when the split moves away from it (a rollout's step,
a cancel, a promotion): each one released from that line goes where the new split sends it,
and the slot it was given passes to the next in that line, so none of them is left waiting
for a release that never comes (found under load by tests/test_controlplane_rollout_load.py:
a cancel left requests waiting in the candidate's line until the queue timeout, then 503)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway_support import RunningGateway
from test_gateway_admission import Held, call_in_thread, capped, replicas  # noqa: F401  (replicas: the fixture)
from test_server_harness import wait_for
from truss_cli.controlplane.gateway import Replica


def test_requests_waiting_for_a_deployment_the_split_left_are_all_answered_by_the_new_one(
        replicas, tmp_path: Path) -> None:  # noqa: F811
    table = capped(replicas[0], park_timeout=20)  # production -> dep1 (r1), one request at a time
    with RunningGateway(table) as gw:
        table.on_capacity = gw.gateway.capacity_changed
        held = Held(gw, tmp_path)  # r1's one slot
        results: list[dict[str, Any]] = [{}, {}, {}]
        callers = []
        for n, result in enumerate(results):
            callers.append(call_in_thread(gw, result))
            wait_for(lambda: gw.gateway.admission.waiting("dep1") == n + 1, "the requests to wait in dep1's line")
        # The split moves to dep2 (r2, no cap) while they wait; then r1's slot frees once.
        gw.on_loop(table.set_replicas, "dep2", [Replica("r2", replicas[1].url)])
        gw.on_loop(table.set_model, "m1", {"production": [("dep2", 1.0)]})
        assert "released" in held.release()
        for caller in callers:
            caller.join(40)
        answers = [(r["response"].status_code, r["response"].headers.get("x-truss-replica-id")) for r in results]
        assert answers == [(200, "r2")] * 3, [r["response"].text for r in results]
