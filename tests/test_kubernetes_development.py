"""Development deployments on the Kubernetes runtime (docs/kubernetes.md, "Development
deployments"), end to end against the fake cluster whose pods are real containers
(tests/kube_fake_cluster.py): a real control plane with `--runtime kubernetes`, patches sent
the way `truss push --watch` sends them (real file edits, `IncrementalTree`, an envelope).

One development deployment goes through a life: pushed, its pod runs the development replica
on the tree the control plane delivered; a code save is hot-swapped into that pod (no new
image, no new pod) and a config.yaml change restarts it there; the pod deleted, its
replacement is delivered the patched tree and serves it; a requirements change is a rebuild
(a new image, a new pod). The control token is in no object's spec, no log."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, opened_store
from controlplane_support import ControlPlaneProcess
from test_controlplane_dev_rebuild import wait_for_state
from test_controlplane_patches import Watcher, ok, push_development, send
from test_kubernetes_runtime import NAMESPACE, Cluster

pytestmark = pytest.mark.docker

# load() draws a token: a hot swap keeps the instance (same token), a restart does not.
MODEL = """
import os
import secrets


class Model:
    def load(self):
        self.token = secrets.token_hex(8)

    def predict(self, request):
        return {{"marker": {marker!r}, "token": self.token, "greeting": os.environ.get("GREETING")}}
"""
CONFIG = "model_name: kubedev\npython_version: py311\nenvironment_variables:\n  GREETING: {greeting}\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("kubernetes-development"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def cp(cluster: Cluster) -> Iterator[ControlPlaneProcess]:
    plane = cluster.start_controlplane()
    try:
        yield plane
    finally:
        plane.close()
        if plane.process.poll() is None:
            plane.terminate()


def predict(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=300))


def pod_names(cluster: Cluster) -> list[str]:
    return sorted(p["metadata"]["name"] for p in cluster.pods())


def serving_pod(cluster: Cluster, cp: ControlPlaneProcess, deployment: dict[str, Any]) -> str | None:
    """The name of the deployment's one pod when it is the one ready replica (its URL the
    pod's IP), else None."""
    pods = cluster.pods()
    with opened_store(cp) as store:
        ready = [r.handle.get("url") for r in store.replicas.list(deployment["id"]) if r.phase == "ready"]
    if len(pods) != 1 or ready != [f"http://{pods[0].get('status', {}).get('podIP')}:8080"]:
        return None
    return pods[0]["metadata"]["name"]


def replica_log(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> str:
    return cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/logs",
                         params={"kind": "replica"}).text


def test_a_development_deployment_is_patched_in_its_pod(cluster: Cluster, cp: ControlPlaneProcess, tmp_path: Path) -> None:
    root = write_model_dir(tmp_path / "kubedev", MODEL.format(marker="a"), CONFIG.format(greeting="built"))
    deployment = push_development(cp, root, "kubedev")
    watcher = Watcher(root)
    first = predict(cp, deployment)
    assert (first["marker"], first["greeting"]) == ("a", "built")

    # The pod runs the development replica on the tree the control plane delivered; the
    # control URL learnt from the pod is in the replica's handle, beside its token file.
    (pod,) = cluster.pods()
    container = pod["spec"]["containers"][0]
    assert "truss_cli.server.control" in container["command"]
    with opened_store(cp) as store:
        (row,) = [r for r in store.replicas.list(deployment["id"]) if r.phase != "stopped"]
    assert row.handle["data"]["control_url"] == f"http://{pod['status']['podIP']}:8081"
    token_file = Path(row.handle["data"]["control_token_file"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text()

    # A code save: hot-swapped in that pod (load()'s state kept), no new image, no new pod.
    image, pods, made = container["image"], pod_names(cluster), cluster.fake.pods_created
    _, envelope = watcher.edit("model/model.py", MODEL.format(marker="b"))
    assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
    second = predict(cp, deployment)
    assert (second["marker"], second["token"]) == ("b", first["token"])
    # config.yaml's environment variable: a restart of the model in the same pod.
    patch, envelope = watcher.edit("config.yaml", CONFIG.format(greeting="patched"))
    assert ok(send(cp, deployment, envelope))["action"] == "restart"
    assert predict(cp, deployment)["greeting"] == "patched"
    assert pod_names(cluster) == pods and cluster.fake.pods_created == made
    assert cluster.deployment(deployment["id"])["spec"]["template"]["spec"]["containers"][0]["image"] == image

    # The pod deleted: its replacement boots empty, is delivered the patched tree, serves it.
    cluster.api.remove("pods", pods[0], NAMESPACE)
    replacement = eventually(lambda: serving_pod(cluster, cp, deployment) not in (None, pods[0])
                             and serving_pod(cluster, cp, deployment), timeout=180)
    replaced = predict(cp, deployment)
    assert (replaced["marker"], replaced["greeting"]) == ("b", "patched")
    assert ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/development/patches/state")
              )["running_patch_point"] == {"hash": patch.next_hash}

    # The token: in its own Secret (mounted), in no Deployment or pod, no log.
    with cluster.api.lock:
        objects = [o for (plural, _, _), o in cluster.api.objects.items() if plural in ("deployments", "pods")]
        secret = cluster.api.objects[("secrets", NAMESPACE, f"truss-control-{deployment['id']}")]
    assert secret["data"]["control_token"]
    assert token not in json.dumps(objects)
    assert token not in cp.log() and token not in replica_log(cp, deployment)

    # A requirements change: no installs inside a pod here, so a rebuild (a new image, a new pod).
    patch, envelope = watcher.edit("config.yaml", CONFIG.format(greeting="patched") + "requirements:\n  - six==1.16.0\n")
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "rebuild" and "requirements" in answer["reason"]
    _, envelope = watcher.edit("model/model.py", MODEL.format(marker="c").replace("import os", "import os\nimport six"))
    ok(send(cp, deployment, envelope, sync=False), 201)
    done = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed", timeout=600)
    assert done["rebuild"] is None, (done, cp.log()[-3000:])
    eventually(lambda: serving_pod(cluster, cp, deployment) not in (None, replacement), timeout=180)
    (rebuilt,) = cluster.pods()
    assert rebuilt["spec"]["containers"][0]["image"] != image
    # The save made during the rebuild is synced into the rebuilt pod once it serves.
    eventually(lambda: predict(cp, deployment)["marker"] == "c", timeout=120)
    cp.client.delete(f"/v1/models/{deployment['model_id']}").raise_for_status()
    eventually(lambda: ("secrets", NAMESPACE, f"truss-control-{deployment['id']}") not in cluster.api.objects, timeout=120)


def test_a_development_model_that_fails_on_its_delivered_tree_fails_the_deployment_saying_why(
    cluster: Cluster, cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    broken = MODEL.format(marker="x").replace("self.token = secrets.token_hex(8)", "raise RuntimeError('weights missing')")
    root = write_model_dir(tmp_path / "kubebroken", broken, CONFIG.format(greeting="built").replace("kubedev", "kubebroken"))
    created = ok(cp.client.post("/v1/models/kubebroken/deployments",
                                json={"tree_hash": cp.upload(root), "development": True}), 201)
    found = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED", timeout=600)
    # The pod's boot tree (empty) never counts: the failure is the model's, on the tree it was sent.
    assert found["status"] == "DEPLOY_FAILED" and "weights missing" in (found.get("status_detail") or ""), found
    eventually(lambda: cluster.pods() == [], timeout=120)
    cp.client.delete(f"/v1/models/{created['model_id']}").raise_for_status()
