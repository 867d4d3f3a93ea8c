"""A Deployment whose pod template changes rolls its pods (tests/kube_fake_cluster.py rolls
as Kubernetes does: a new ReplicaSet, maxSurge 1 / maxUnavailable 0). Two product paths
change a template on a live deployment; both are driven here end to end with requests
flowing through the gateway (a real control plane, `--runtime kubernetes`, real containers):

- a control-plane upgrade whose objects.py emits another template: the next start of an
  existing deployment re-applies it and every pod rolls, pods claimed by live replicas too;
- a development rebuild (a requirements change): the Deployment is re-applied with the new
  image while the old replica serves.

Afterwards: the Deployment's count is the replicas', every live replica is claimed by exactly
one live pod, no pod is claimed by a stopped replica, no replica was restarted, and no request
failed (docs/kubernetes.md, "Rolling updates")."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, opened_store
from controlplane_support import ControlPlaneProcess
from kube_fake_cluster import TEMPLATE_HASH
from test_controlplane_dev_rebuild import wait_for_state
from test_controlplane_patches import Watcher, ok, push_development, send
from test_kubernetes_runtime import CLAIM, HELLO, Cluster

pytestmark = pytest.mark.docker

UPGRADED = "test.truss/upgraded"
# Loaded into the control plane's process (a `sitecustomize` on its PYTHONPATH): its
# objects.py now emits one more template annotation, as a newer truss-cli's might.
UPGRADE_HOOK = f"""
from truss_cli.controlplane.runtimes.kubernetes import objects as _objects

_emitted = _objects.kube_deployment


def _upgraded(target, config):
    made = _emitted(target, config)
    made["spec"]["template"]["metadata"].setdefault("annotations", {{}})[{UPGRADED!r}] = "true"
    return made


_objects.kube_deployment = _upgraded
"""


class Traffic:
    """Threads sending predicts through the gateway one after another; every answer kept."""

    def __init__(self, cp: ControlPlaneProcess, path: str, threads: int = 3) -> None:
        self.cp, self.path = cp, path
        self.answers: list[tuple[Any, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=300)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def failures(self) -> list[tuple[Any, str]]:
        with self.lock:
            return [a for a in self.answers if a[0] != 200]

    def _run(self) -> None:
        with httpx.Client(base_url=self.cp.url, headers={"Authorization": f"Api-Key {self.cp.admin_key}"},
                          timeout=300, trust_env=False) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post(self.path, json={"name": "rolling"})
                    got = (answer.status_code, answer.text[:300])
                except httpx.HTTPError as exc:
                    got = (None, repr(exc))
                with self.lock:
                    self.answers.append(got)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("kubernetes-rolling"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def cp(cluster: Cluster) -> Iterator[list[ControlPlaneProcess]]:
    """The test's control planes (it may replace one); the last one is closed after it."""
    planes: list[ControlPlaneProcess] = [cluster.start_controlplane()]
    try:
        yield planes
    finally:
        for plane in planes:
            plane.close()
            if plane.process.poll() is None:
                plane.terminate()


def pods_of(cluster: Cluster, deployment_id: str) -> list[dict]:
    return [p for p in cluster.pods() if p["metadata"]["labels"].get("truss.dev/deployment-id") == deployment_id]


def live_replicas(cp: ControlPlaneProcess, deployment_id: str) -> dict[str, str]:
    """Replica id -> phase, of the rows not stopped."""
    with opened_store(cp) as store:
        return {r.handle["replica_id"]: r.phase for r in store.replicas.list(deployment_id) if r.phase != "stopped"}


def restarts(cp: ControlPlaneProcess, deployment_id: str) -> int:
    """How often the deployment's replicas were restarted (a replica found down)."""
    with opened_store(cp) as store:
        return sum(r.restarts for r in store.replicas.list(deployment_id))


def settled(cluster: Cluster, cp: ControlPlaneProcess, deployment_id: str, count: int, **template: str) -> bool:
    """The deployment's rollout is over and its books are right: `count` pods, none
    terminating, all of the current template (its annotations include `template`), the
    Deployment's count is `count`, and the pods' claims are exactly the live replicas, one
    each, all ready."""
    pods = pods_of(cluster, deployment_id)
    if len(pods) != count or any(p["metadata"].get("deletionTimestamp") for p in pods):
        return False
    if any(p["metadata"].get("annotations", {}).get(k) != v for p in pods for k, v in template.items()):
        return False
    if len({p["metadata"]["labels"].get(TEMPLATE_HASH) for p in pods}) != 1:
        return False
    claims = [p["metadata"].get("annotations", {}).get(CLAIM) for p in pods]
    live = live_replicas(cp, deployment_id)
    return (cluster.deployment(deployment_id)["spec"]["replicas"] == count and sorted(map(str, claims)) == sorted(live)
            and set(live.values()) == {"ready"})


def books(cluster: Cluster, cp: ControlPlaneProcess, deployment_id: str) -> str:
    """What a failed check shows."""
    pods = [(p["metadata"]["name"], p["metadata"]["labels"].get(TEMPLATE_HASH), p["metadata"].get("annotations", {}).get(CLAIM),
             bool(p["metadata"].get("deletionTimestamp"))) for p in pods_of(cluster, deployment_id)]
    return (f"pods {pods}, wanted {cluster.deployment(deployment_id)['spec'].get('replicas')}, "
            f"replicas {live_replicas(cp, deployment_id)}\n{cp.log()[-4000:]}")


def history(cluster: Cluster, deployment_id: str) -> str:
    """What a failed check shows of the pods' lives: each change of one, and their logs' ends."""
    lines, seen = [], {}
    with cluster.api.lock:
        events = list(cluster.api.events)
        logs = {pod: list(entries) for (_, pod), entries in cluster.api.logs.items()}
    for version, kind, plural, pod in events:
        if plural != "pods" or pod["metadata"].get("labels", {}).get("truss.dev/deployment-id") != deployment_id:
            continue
        status = pod.get("status", {})
        state = (kind, pod["metadata"]["labels"].get(TEMPLATE_HASH), pod["spec"]["containers"][0]["image"][-6:],
                 pod["metadata"].get("annotations", {}).get(CLAIM), _is_ready(pod), bool(pod["metadata"].get("deletionTimestamp")),
                 status.get("podIP"))
        name = pod["metadata"]["name"]
        if seen.get(name) != state:
            seen[name] = state
            lines.append(f"{version} {name} {state}")
    for pod, entries in logs.items():
        if deployment_id in pod:
            lines += [f"log {pod}: {text}" for _, text in entries[-15:]]
    return "\n".join(lines)


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", []))


def no_failed_request(traffic: Traffic, diagnosis: Any) -> None:
    """Every request answered 200 (docs/kubernetes.md, "Rolling updates": the races that once
    failed some are fixed; `diagnosis` shows the pods' history and logs when one does)."""
    failures = traffic.failures()
    assert failures == [], (len(failures), traffic.count(), failures[:5], diagnosis)


def test_an_upgrade_that_changes_the_template_rolls_every_pod_without_a_failed_request(
    cluster: Cluster, cp: list[ControlPlaneProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = cp[0]
    created = plane.push(HELLO)
    model_id, deployment_id = created["model_id"], created["id"]
    assert plane.wait_for_status(model_id, deployment_id, "ACTIVE", "DEPLOY_FAILED", "BUILD_FAILED")["status"] == "ACTIVE"
    settings = f"/v1/models/{model_id}/deployments/{deployment_id}/autoscaling_settings"
    plane.client.patch(settings, json={"min_replica": 2, "max_replica": 2}).raise_for_status()
    eventually(lambda: settled(cluster, plane, deployment_id, 2), timeout=300)
    before = {p["metadata"]["name"] for p in pods_of(cluster, deployment_id)}
    replicas = set(live_replicas(plane, deployment_id))

    # The upgrade: the same database and pods, a control plane whose objects.py differs.
    hook = tmp_path / "upgrade"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(UPGRADE_HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    plane.close()
    plane.terminate()
    plane = cluster.start_controlplane()
    cp.append(plane)
    assert plane.wait_for_status(model_id, deployment_id, "ACTIVE")["status"] == "ACTIVE"
    assert {p["metadata"]["name"] for p in pods_of(cluster, deployment_id)} == before  # adopted, nothing re-applied yet
    # A restarted gateway parks requests until its first tick publishes the routes.
    path = f"/model-{model_id}/production/predict"
    eventually(lambda: plane.client.post(path, json={"name": "restarted"}, timeout=120).status_code == 200, timeout=120)

    with Traffic(plane, path) as traffic:
        eventually(lambda: traffic.count() >= 3, timeout=120)
        # A third replica: its start re-applies the Deployment with the new template, which rolls every pod.
        plane.client.patch(settings, json={"min_replica": 3, "max_replica": 3}).raise_for_status()
        try:
            eventually(lambda: settled(cluster, plane, deployment_id, 3, **{UPGRADED: "true"}), timeout=420)
        except AssertionError:
            raise AssertionError(books(cluster, plane, deployment_id)) from None
        rolled = traffic.count()
        eventually(lambda: traffic.count() >= rolled + 3, timeout=120)  # and it serves on the new pods
    assert not before & {p["metadata"]["name"] for p in pods_of(cluster, deployment_id)}  # every pod rolled
    # A planned roll is no failure: the replicas followed their pods' replacements, none was
    # found down and restarted (which the deployment's log would say, with a backoff).
    assert replicas < set(live_replicas(plane, deployment_id)), books(cluster, plane, deployment_id)
    assert restarts(plane, deployment_id) == 0, books(cluster, plane, deployment_id)
    assert settled(cluster, plane, deployment_id, 3, **{UPGRADED: "true"}), books(cluster, plane, deployment_id)
    diagnosis = (history(cluster, deployment_id), books(cluster, plane, deployment_id))
    plane.client.delete(f"/v1/models/{model_id}").raise_for_status()
    eventually(lambda: pods_of(cluster, deployment_id) == [], timeout=180)
    no_failed_request(traffic, diagnosis)


MODEL = """
class Model:
    def predict(self, request):
        import importlib.util
        return {{"marker": {marker!r}, "six": importlib.util.find_spec("six") is not None}}
"""
CONFIG = "model_name: kuberoll\npython_version: py311\n"


def test_a_development_rebuild_rolls_to_the_new_image_without_a_failed_request(
    cluster: Cluster, cp: list[ControlPlaneProcess], tmp_path: Path
) -> None:
    plane = cp[0]
    root = write_model_dir(tmp_path / "kuberoll", MODEL.format(marker="a"), CONFIG)
    deployment = push_development(plane, root, "kuberoll")
    deployment_id = deployment["id"]
    eventually(lambda: settled(cluster, plane, deployment_id, 1), timeout=300)
    (old,) = pods_of(cluster, deployment_id)
    image = old["spec"]["containers"][0]["image"]
    watcher = Watcher(root)

    with Traffic(plane, f"/model-{deployment['model_id']}/development/predict") as traffic:
        eventually(lambda: traffic.count() >= 3, timeout=120)
        _, envelope = watcher.edit("config.yaml", CONFIG + "requirements:\n  - six==1.16.0\n")
        assert ok(send(plane, deployment, envelope))["action"] == "rebuild"
        done = wait_for_state(plane, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed",
                              timeout=600)
        assert done["rebuild"] is None, (done, plane.log()[-3000:])
        try:
            eventually(lambda: settled(cluster, plane, deployment_id, 1)
                       and pods_of(cluster, deployment_id)[0]["spec"]["containers"][0]["image"] != image, timeout=300)
        except AssertionError:
            raise AssertionError(books(cluster, plane, deployment_id)) from None
        rolled = traffic.count()
        eventually(lambda: traffic.count() >= rolled + 3, timeout=120)
    assert ok(plane.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=120))["six"] is True
    assert settled(cluster, plane, deployment_id, 1), books(cluster, plane, deployment_id)
    diagnosis = (history(cluster, deployment_id), books(cluster, plane, deployment_id))
    plane.client.delete(f"/v1/models/{deployment['model_id']}").raise_for_status()
    eventually(lambda: pods_of(cluster, deployment_id) == [], timeout=180)
    no_failed_request(traffic, diagnosis)
