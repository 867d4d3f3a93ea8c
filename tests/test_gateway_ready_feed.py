"""The gateway's table with a runtime's ready feed (runtimes/base.ReadyFeed, e.g. Kubernetes
EndpointSlices; gateway/ready_set.py): the feed alone decides which replicas take requests,
at once, while the reconciler's publishes name them and say which are being retired. Real
sockets, real model servers; the feed's pictures are put on the gateway's loop as the control
plane's follower puts them (ready_feed.py)."""

from __future__ import annotations

import threading

import httpx
import pytest

from gateway_support import RunningGateway
from test_server_harness import ModelServer, wait_for, write_model_dir
from truss_cli.controlplane.gateway import Replica, RoutingTable

MODEL = """
import os

class Model:
    def predict(self, model_input):
        return {"port": os.environ.get("TRUSS_TEST_PORT_NAME")}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    model_dir = write_model_dir(tmp_path_factory.mktemp("ready-feed") / "m", MODEL)
    # No TRUSS_REPLICA_ID: the servers send no x-truss-replica-id, so the gateway's id shows.
    with ModelServer(model_dir, env={"TRUSS_TEST_PORT_NAME": "a"}) as a, ModelServer(model_dir, env={"TRUSS_TEST_PORT_NAME": "b"}) as b:
        a.wait_ready()
        b.wait_ready()
        yield a, b


def table() -> RoutingTable:
    made = RoutingTable(park_timeout_seconds=60)
    made.set_model("m1", {"production": [("dep1", 1.0)]})
    return made


def answered_by(gw: RunningGateway, times: int = 12) -> set[tuple[str, str]]:
    """{(the server that answered, the replica id the client was shown)} over `times` requests."""
    seen = set()
    for _ in range(times):
        answer = gw.client.post("/model-m1/production/predict", json={})
        assert answer.status_code == 200, answer.text
        seen.add((answer.json()["port"], answer.headers["x-truss-replica-id"]))
    return seen


def test_the_feed_alone_decides_who_takes_requests_and_ids_come_from_the_reconciler(servers) -> None:
    a, b = servers
    routing = table()
    # The reconciler's last tick: replica r-a is ready, r-b is loading (its URL known, not ready).
    routing.set_replicas("dep1", [Replica("r-a", a.url)], known={a.url: "r-a", b.url: "r-b"})
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        # b is ready by the feed before any tick says so; it is shown by its replica id.
        assert answered_by(gw) == {("a", "r-a"), ("b", "r-b")}

        gw.on_loop(routing.set_ready, {"dep1": {b.url: "pod-b"}})  # a's readiness failed
        assert answered_by(gw) == {("b", "r-b")}

        # A pod the reconciler has not recorded yet is shown by the feed's name for it.
        gw.on_loop(routing.set_replicas, "dep1", [], False, False, {}, ())
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a"}})
        assert answered_by(gw) == {("a", "pod-a")}

        # The feed ended: back to the reconciler's view (r-a ready).
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a", b.url: "r-b"}, ())
        gw.on_loop(routing.set_ready, None)
        assert answered_by(gw) == {("a", "r-a")}


def test_a_replica_being_retired_takes_no_request_while_the_feed_still_lists_it(servers) -> None:
    a, b = servers
    routing = table()
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        # Scale-down: the tick retires r-b (its pod is still ready until the runtime stops it).
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, (b.url,))
        assert answered_by(gw) == {("a", "r-a")}


def test_a_stopped_replica_takes_no_request_while_the_feed_still_lists_its_pod(servers) -> None:
    a, b = servers
    routing = table()
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, (b.url,))
        # r-b's row is STOPPED: the reconciler names it no more, but its pod is shutting down
        # and the feed has not heard yet.
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, ())
        assert answered_by(gw) == {("a", "r-a")}
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})  # the feed's next picture, still stale
        assert answered_by(gw) == {("a", "r-a")}

        # The feed drops it; a new pod that later gets the same address takes requests at once.
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a"}})
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-new"}})
        assert answered_by(gw) == {("a", "r-a"), ("b", "pod-new")}


def test_a_replica_stopped_without_being_retired_first_is_held_back_too(servers) -> None:
    a, b = servers
    routing = table()
    with RunningGateway(routing) as gw:
        # A development rebuild's hand-over: r-b was live, and the next publish has it stopped.
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url), Replica("r-b", b.url)], False, False,
                   {a.url: "r-a", b.url: "r-b"}, ())
        assert answered_by(gw) == {("a", "r-a"), ("b", "r-b")}
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, ())
        assert answered_by(gw) == {("a", "r-a")}


def test_a_live_replica_reusing_a_stopped_replicas_address_takes_requests(servers) -> None:
    a, b = servers
    routing = table()
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, (b.url,))
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, ())
        # The feed never saw b's address leave, but a live replica now claims it.
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a", b.url: "r-c"}, ())
        assert answered_by(gw) == {("a", "r-a"), ("b", "r-c")}


def test_a_stopped_replicas_address_is_held_back_for_a_bounded_time_only(servers) -> None:
    a, b = servers
    now = [1000.0]
    routing = RoutingTable(park_timeout_seconds=60, retired_hold_seconds=30, clock=lambda: now[0])
    routing.set_model("m1", {"production": [("dep1", 1.0)]})
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, (b.url,))
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)], False, False, {a.url: "r-a"}, ())
        now[0] += 29
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        assert answered_by(gw) == {("a", "r-a")}
        # A pod nobody claims that the feed lists ready this long is not the stopped one's.
        now[0] += 2
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a", b.url: "pod-b"}})
        assert answered_by(gw) == {("a", "r-a"), ("b", "pod-b")}


def test_parked_requests_go_as_soon_as_the_feed_lists_a_ready_replica(servers) -> None:
    a, _ = servers
    routing = table()
    answers: list[httpx.Response] = []
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {})
        gw.on_loop(routing.set_replicas, "dep1", [], True)  # waking from zero: nothing ready yet

        def call() -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as client:
                answers.append(client.post("/model-m1/production/predict", json={}))

        waiting = [threading.Thread(target=call) for _ in range(3)]
        for thread in waiting:
            thread.start()
        wait_for(lambda: gw.metric('truss_gateway_requests_parked{model="m1"}') == 3, "the requests to park")
        # No publish: the feed alone brings the ready pod, and the parked requests go to it.
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a"}})
        for thread in waiting:
            thread.join(60)
        assert [(r.status_code, r.json()["port"], r.headers["x-truss-replica-id"]) for r in answers] == [(200, "a", "pod-a")] * 3


def test_a_replica_the_reconciler_saw_ready_but_the_feed_not_yet_parks_requests_until_it_does(servers) -> None:
    a, _ = servers
    routing = table()
    answers: list[httpx.Response] = []
    with RunningGateway(routing) as gw:
        gw.on_loop(routing.set_ready, {"dep1": {}})
        gw.on_loop(routing.set_replicas, "dep1", [Replica("r-a", a.url)])  # the tick read the pod's Ready condition first

        thread = threading.Thread(target=lambda: answers.append(gw.client.post("/model-m1/production/predict", json={})))
        thread.start()
        wait_for(lambda: gw.metric('truss_gateway_requests_parked{model="m1"}') == 1, "the request to park")
        gw.on_loop(routing.set_ready, {"dep1": {a.url: "pod-a"}})
        thread.join(60)
        assert answers[0].status_code == 200 and answers[0].headers["x-truss-replica-id"] == "r-a"

        # The reconciler then says nothing is ready and nothing starts: refused, not parked.
        gw.on_loop(routing.set_ready, {"dep1": {}})
        gw.on_loop(routing.set_replicas, "dep1", [])
        refused = gw.client.post("/model-m1/production/predict", json={})
        assert refused.status_code == 503 and refused.json()["error_code"] == "NO_REPLICA_READY"
