"""The gateway routes a Kubernetes deployment by its EndpointSlices (runtimes/base.ReadyFeed,
gateway/ready_set.py), end to end: a real control plane with `--runtime kubernetes`, the fake
cluster of tests/kube_fake_cluster.py (pods are real containers; its EndpointSlice controller
derives each slice from the pods' Ready conditions and deletionTimestamps), requests through
the gateway to the pods' IPs.

One deployment of two pods whose readiness a request can turn off (`is_healthy`). The
reconciler is shown unable to notice by holding its pod reads at the fake API server (its
tick waits on them; no tick can publish), so what changes the routing meanwhile is the feed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import eventually
from controlplane_support import ControlPlaneProcess
from test_kubernetes_runtime import Cluster

pytestmark = pytest.mark.docker

MODEL = """
import os
import time

NOT_READY = "/tmp/not-ready"  # an emptyDir: each pod its own
RELEASE = "/tmp/release"


class Model:
    def predict(self, request):
        if "ready" in request:
            if request["ready"]:
                if os.path.exists(NOT_READY):
                    os.remove(NOT_READY)
            else:
                open(NOT_READY, "w").close()
        if request.get("hold"):
            print("holding a request", flush=True)
            deadline = time.monotonic() + 60
            while not os.path.exists(RELEASE) and time.monotonic() < deadline:
                time.sleep(0.05)
        return {"pod": os.environ["TRUSS_REPLICA_ID"]}

    def is_healthy(self):
        return not os.path.exists(NOT_READY)
"""
PODS = ("list", "pods")  # what the reconciler reads each tick (the runtime's `status`)


@dataclass
class Scene:
    cluster: Cluster
    cp: ControlPlaneProcess
    model_id: str
    deployment_id: str

    def pods(self) -> dict[str, str]:
        """Pod name -> IP, of the deployment's pods that are not terminating."""
        return {p["metadata"]["name"]: p["status"]["podIP"] for p in self.cluster.pods()
                if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")}

    def endpoints(self) -> dict[str, dict]:
        """Pod name -> its endpoint's conditions, from the deployment's EndpointSlice."""
        return {e["targetRef"]["name"]: e["conditions"] for s in self.cluster.fake.slices()
                if s["metadata"]["labels"].get("truss.dev/deployment-id") == self.deployment_id for e in s["endpoints"]}

    def answered_by(self, times: int = 10) -> set[str]:
        """The pods that answered `times` requests through the gateway."""
        pods = set()
        for _ in range(times):
            answer = self.cp.client.post(f"/model-{self.model_id}/production/predict", json={}, timeout=60)
            assert answer.status_code == 200, answer.text
            pods.add(answer.json()["pod"])
        return pods

    def reconciler_stuck(self) -> bool:
        return self.cluster.api.waiting_calls.get(PODS, 0) > 0

    def failed_ticks(self) -> int:
        return self.cp.log().count("reconciling deployment")


def set_ready(ip: str, ready: bool) -> None:
    """Straight to the pod (not through the gateway): its readiness probe answers accordingly."""
    httpx.post(f"http://{ip}:8080/v1/models/model:predict", json={"ready": ready}, timeout=30, trust_env=False).raise_for_status()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    root = tmp_path_factory.mktemp("endpoints")
    cluster = Cluster(root)
    model_dir = write_model_dir(root / "toggle", MODEL, "model_name: toggle\npython_version: py311\n")
    made = None
    try:
        cp = cluster.start_controlplane()
        made = Scene(cluster, cp, "", "")
        created = cp.push(model_dir)
        made.model_id, made.deployment_id = created["model_id"], created["id"]
        active = cp.wait_for_status(made.model_id, made.deployment_id, "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert active["status"] == "ACTIVE", (active, cp.log()[-3000:])
        settings = f"/v1/models/{made.model_id}/deployments/{made.deployment_id}/autoscaling_settings"
        cp.client.patch(settings, json={"min_replica": 2, "max_replica": 2}).raise_for_status()
        eventually(lambda: len(made.pods()) == 2 and all(c["ready"] for c in made.endpoints().values())
                   and len(made.endpoints()) == 2, timeout=300)
        yield made
    finally:
        if made is not None:
            made.cp.close()
            if made.cp.process.poll() is None:
                made.cp.terminate()
        cluster.close()


def test_requests_go_to_the_pod_ips_the_slice_lists_ready(scene: Scene) -> None:
    pods = scene.pods()
    assert set(scene.endpoints()) == set(pods)
    with scene.cluster.api.lock:
        (endpoint_slice,) = [s for (plural, _, _), s in scene.cluster.api.objects.items() if plural == "endpointslices"]
    assert sorted(a for e in endpoint_slice["endpoints"] for a in e["addresses"]) == sorted(pods.values())
    eventually(lambda: scene.answered_by() == set(pods))


def test_a_pod_that_stops_being_ready_gets_no_request_while_the_reconciler_cannot_look(scene: Scene) -> None:
    (a, a_ip), (b, _) = sorted(scene.pods().items())
    failed = scene.failed_ticks()
    scene.cluster.api.hold(*PODS)
    try:
        eventually(scene.reconciler_stuck)  # its tick waits for the pods: no tick can publish now
        set_ready(a_ip, False)
        eventually(lambda: scene.endpoints()[a] == {"ready": False, "serving": False, "terminating": False})
        eventually(lambda: scene.answered_by() == {b})
        assert scene.reconciler_stuck() and scene.failed_ticks() == failed  # the same tick, still waiting
    finally:
        scene.cluster.api.hold(*PODS, held=False)
    set_ready(a_ip, True)
    eventually(lambda: scene.answered_by() == {a, b})


def test_a_dropped_watch_resumes_and_routing_follows_what_changed_while_nobody_watched(scene: Scene) -> None:
    (a, a_ip), (b, _) = sorted(scene.pods().items())
    api = scene.cluster.api
    lists = len(api.list_requests("endpointslices"))
    failed = scene.failed_ticks()
    api.hold(*PODS)
    try:
        eventually(scene.reconciler_stuck)
        api.hold_watches(True)
        api.drop_watches(abruptly=True)  # the feed's connection breaks; the change below happens meanwhile
        set_ready(a_ip, False)
        eventually(lambda: scene.endpoints()[a]["ready"] is False)
        api.hold_watches(False)
        eventually(lambda: scene.answered_by() == {b})
        assert scene.reconciler_stuck() and scene.failed_ticks() == failed
    finally:
        api.hold_watches(False)
        api.hold(*PODS, held=False)
    # Resumed from the version it had seen, not listed again.
    assert len(api.list_requests("endpointslices")) == lists
    assert api.watch_requests("endpointslices")[-1].get("resourceVersion")
    set_ready(a_ip, True)
    eventually(lambda: scene.answered_by() == {a, b})


def test_a_deleted_pod_finishes_its_request_takes_no_new_one_and_is_replaced(scene: Scene) -> None:
    (a, a_ip), (b, _) = sorted(scene.pods().items())
    held: list[httpx.Response] = []
    request = threading.Thread(target=lambda: held.append(httpx.post(
        f"http://{a_ip}:8080/v1/models/model:predict", json={"hold": True}, timeout=120, trust_env=False)))
    request.start()
    try:
        eventually(lambda: any("holding a request" in text for _, text in scene.cluster.api.logs.get(("truss", a), [])))
        scene.cluster.api.terminate_pod(a)  # as `kubectl delete pod`: SIGTERM, the server drains what it holds
        eventually(lambda: scene.endpoints().get(a, {}).get("terminating") is True)
        assert scene.endpoints()[a]["ready"] is False
        assert a not in scene.answered_by()
        assert a in {p["metadata"]["name"] for p in scene.cluster.pods()}  # still draining: its request is held
    finally:
        container = scene.cluster.fake.container_of(a)
        if container:
            scene.cluster.client.exec_start(scene.cluster.client.exec_create(container, ["touch", "/tmp/release"]))
        request.join(120)
    assert held and held[0].status_code == 200 and held[0].json() == {"pod": a}  # drained, not cut off
    # Its preStop hook ran in the container (the image's Python: it exists there) before SIGTERM,
    # while its endpoint already said terminating (docs/kubernetes.md, "Stopping a pod").
    eventually(lambda: "SIGTERM" in scene.cluster.fake.stops.get(a, []))
    assert scene.cluster.fake.stops[a] == ["preStop", "preStop done", "SIGTERM"]
    assert a not in scene.cluster.fake.pre_stop_failures, scene.cluster.fake.pre_stop_failures[a]
    eventually(lambda: a not in scene.endpoints() and a not in {p["metadata"]["name"] for p in scene.cluster.pods()}, timeout=120)
    # Replaced: two pods again, both taking requests, and the Deployment's count is still 2.
    eventually(lambda: len(scene.pods()) == 2 and len(scene.answered_by()) == 2, timeout=300)
    assert scene.cluster.deployment(scene.deployment_id)["spec"]["replicas"] == 2
    assert b in scene.pods()


def test_without_endpointslices_in_its_role_the_control_plane_routes_by_the_reconciler_and_says_so_once(scene: Scene) -> None:
    api = scene.cluster.api
    for verb in ("list", "watch"):
        api.forbid(verb, "endpointslices")
    try:
        scene.cp.kill()
        scene.cp.close()
        scene.cp = scene.cluster.start_controlplane()
        assert scene.cp.wait_for_status(scene.model_id, scene.deployment_id, "ACTIVE")["status"] == "ACTIVE"
        eventually(lambda: scene.cp.client.post(f"/model-{scene.model_id}/production/predict", json={}).status_code == 200)
        eventually(lambda: "ready feed stopped" in scene.cp.log())
        assert "Role lacks the verb list on endpointslices.discovery.k8s.io" in scene.cp.log()
        (a, a_ip), (b, _) = sorted(scene.pods().items())
        eventually(lambda: scene.answered_by() == {a, b})
        set_ready(a_ip, False)  # seen by the reconciler's next tick now
        eventually(lambda: scene.answered_by() == {b})
        set_ready(a_ip, True)
        eventually(lambda: scene.answered_by() == {a, b})
        assert scene.cp.log().count("ready feed stopped") == 1
    finally:
        for verb in ("list", "watch"):
            api.allow(verb, "endpointslices")
