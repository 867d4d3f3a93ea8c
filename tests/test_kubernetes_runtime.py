"""The Kubernetes runtime end to end (runtimes/kubernetes/runtime.py), against a fake cluster
whose pods are real containers (tests/kube_fake_cluster.py): a real control plane started
with `--runtime kubernetes` and a kubeconfig naming the fake API, images built and pushed to a
real local registry and pulled back by digest, the gateway sending requests to pod IPs.

One deployment goes through a life: pushed → ACTIVE → answers; two replicas and back to one;
the control plane killed and started again re-adopts its pod (no new pod); scaled to zero,
a request wakes it; deleted, its objects go. No cluster runs here (docs/kubernetes.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from controlplane_checks import eventually, opened_store
from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, start_controlplane
from docker_support import base_image, engine
from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import FakeCluster, write_kubeconfig
from registry_support import start_registry

pytestmark = pytest.mark.docker

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"
NAMESPACE = "truss"
CLAIM = "truss.dev/replica-id"


class Cluster:
    def __init__(self, root: Path) -> None:
        self.client = engine()
        base_image(self.client)
        self.registry = start_registry(root / "registry")
        self.api = FakeKubernetesApi(namespaces=(NAMESPACE,))
        self.fake = FakeCluster(self.api, self.client, root / "kubelet", NAMESPACE)
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", self.api.url, NAMESPACE)
        self.data_dir = root / "cp"
        self.admin_key: str | None = None

    def args(self) -> tuple[str, ...]:
        return ("--namespace", NAMESPACE, "--kubeconfig", str(self.kubeconfig), "--registry", f"{self.registry.host}/models")

    def start_controlplane(self) -> ControlPlaneProcess:
        cp = start_controlplane(self.data_dir, runtime="kubernetes", admin_key=self.admin_key, extra_args=self.args())
        self.admin_key = cp.admin_key
        return cp

    def pods(self) -> list[dict]:
        return self.fake.pods()

    def deployment(self, deployment_id: str) -> dict:
        with self.api.lock:
            return self.api.objects[("deployments", NAMESPACE, f"truss-deployment-{deployment_id}")]

    def close(self) -> None:
        """Everything the module made goes, whatever its tests did: the pods' containers (the
        fake's close), then the images pushed to the registry and pulled back, under both
        names (`truss-NAME:ID`, `HOST/models/truss-NAME:ID`), so no run leaves tags behind."""
        self.fake.close()
        self.api.close()
        self.registry.stop()
        left = self.registry.forget_on_engine(self.client)
        assert not left, f"images this module pushed are still on the engine: {left}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("kubernetes"))
    try:
        yield made
    finally:
        made.close()


def claimed_pods(cluster: Cluster) -> dict[str, str]:
    """Replica id -> pod name, of the pods the runtime claimed."""
    return {p["metadata"]["annotations"][CLAIM]: p["metadata"]["name"] for p in cluster.pods()
            if CLAIM in p["metadata"].get("annotations", {})}


def live_replica_ids(cp: ControlPlaneProcess, deployment_id: str) -> set[str]:
    with opened_store(cp) as store:
        return {r.handle["replica_id"] for r in store.replicas.list(deployment_id) if r.phase != "stopped"}


def deployment_now(cp: ControlPlaneProcess, created: dict[str, Any]) -> dict[str, Any]:
    return cp.client.get(f"/v1/models/{created['model_id']}/deployments/{created['id']}").raise_for_status().json()


def predict(cp: ControlPlaneProcess, model_id: str, name: str) -> str:
    answer = cp.client.post(f"/model-{model_id}/production/predict", json={"name": name}, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()["greeting"]


def test_a_deployment_lives_on_the_fake_cluster(cluster: Cluster) -> None:
    cp = cluster.start_controlplane()
    try:
        server = cp.client.get("/v1/server").json()
        assert server["runtime"] == "kubernetes"
        assert f"namespace {NAMESPACE}" in server["runtime_reason"] and cluster.api.url in server["runtime_reason"]

        created = cp.push(HELLO)
        model_id, deployment_id = created["model_id"], created["id"]
        active = cp.wait_for_status(model_id, deployment_id, "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert active["status"] == "ACTIVE", (active, cp.log()[-3000:])
        assert predict(cp, model_id, "Kubernetes") == "Hello, Kubernetes!"

        # The pod runs the pushed image by digest, from the registry; its claim is the replica's id.
        (pod,) = cluster.pods()
        image = pod["spec"]["containers"][0]["image"]
        assert image.startswith(f"{cluster.registry.host}/models/") and "@sha256:" in image
        assert set(claimed_pods(cluster)) == live_replica_ids(cp, deployment_id)
        assert cluster.deployment(deployment_id)["spec"]["replicas"] == 1
        with opened_store(cp) as store:
            (row,) = store.replicas.list(deployment_id)
        assert row.handle["url"] == f"http://{pod['status']['podIP']}:8080"  # learnt from status, recorded

        # Two replicas, and back to one: the count goes through `scale`, each pod claimed once.
        settings = f"/v1/models/{model_id}/deployments/{deployment_id}/autoscaling_settings"
        cp.client.patch(settings, json={"min_replica": 2, "max_replica": 2}).raise_for_status()
        eventually(lambda: deployment_now(cp, created)["active_replica_count"] == 2, timeout=300)
        assert len(claimed_pods(cluster)) == 2 and set(claimed_pods(cluster)) == live_replica_ids(cp, deployment_id)
        assert cluster.deployment(deployment_id)["spec"]["replicas"] == 2
        cp.client.patch(settings, json={"min_replica": 1, "max_replica": 1}).raise_for_status()
        eventually(lambda: len(cluster.pods()) == 1 and len(live_replica_ids(cp, deployment_id)) == 1, timeout=300)
        assert cluster.deployment(deployment_id)["spec"]["replicas"] == 1
        assert set(claimed_pods(cluster)) == live_replica_ids(cp, deployment_id)
        assert predict(cp, model_id, "one") == "Hello, one!"

        # A control plane killed and started again finds its pod: no new pod, the same answer.
        (survivor,) = cluster.pods()
        made = cluster.fake.pods_created
        cp.kill()
        cp.close()
        cp = cluster.start_controlplane()
        assert cp.wait_for_status(model_id, deployment_id, "ACTIVE")["status"] == "ACTIVE"
        assert predict(cp, model_id, "again") == "Hello, again!"
        assert [p["metadata"]["name"] for p in cluster.pods()] == [survivor["metadata"]["name"]]
        assert cluster.fake.pods_created == made

        # Scale to zero: no pod, the Deployment at 0; a request wakes it and is answered.
        cp.client.patch(settings, json={"min_replica": 0, "autoscaling_window": 10, "scale_down_delay": 2}).raise_for_status()
        cp.wait_for_status(model_id, deployment_id, "SCALED_TO_ZERO", timeout=120)
        eventually(lambda: cluster.pods() == [] and cluster.deployment(deployment_id)["spec"]["replicas"] == 0)
        assert predict(cp, model_id, "awake") == "Hello, awake!"
        assert len(cluster.pods()) == 1 and cluster.fake.pods_created == made + 1

        # Deleted: the deployment's objects go with it, and so do its pods.
        assert cp.client.delete(f"/v1/models/{model_id}").json() == {"id": model_id, "deleted": True}
        eventually(lambda: not any(key[0] in ("deployments", "services", "poddisruptionbudgets")
                                   for key in list(cluster.api.objects)) and cluster.pods() == [], timeout=120)
        # And its image's tags on this machine: the engine's and the registry's.
        eventually(lambda: not [tag for image in cluster.client.images() for tag in image.get("RepoTags") or []
                                if tag.endswith(f":{deployment_id}")], timeout=60)
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()


def test_the_runtime_options_are_checked_before_anything_starts(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truss_cli.controlplane", "serve", "--data-dir", str(tmp_path / "cp"),
                               "--port", "0", *args], capture_output=True, text=True, timeout=60)

    missing = serve("--runtime", "kubernetes", "--namespace", "truss")
    assert missing.returncode == 2 and "--runtime kubernetes needs --registry HOST/PREFIX" in missing.stderr
    stray = serve("--runtime", "process", "--namespace", "truss")
    assert stray.returncode == 2 and "--namespace: only with --runtime kubernetes" in stray.stderr
    no_file = serve("--runtime", "kubernetes", "--namespace", "truss", "--registry", "127.0.0.1:5000/m",
                    "--kubeconfig", str(tmp_path / "nope"))
    assert no_file.returncode == 2 and f"No kubeconfig at {tmp_path / 'nope'}" in no_file.stderr


SECRET_VALUE = "s3cr3t-value-never-shown"


def test_secrets_reach_the_pod_as_files_its_log_is_the_deployments_and_a_crashed_pod_is_replaced(
    cluster: Cluster, tmp_path: Path
) -> None:
    model_dir = write_model_dir(
        tmp_path / "secretive",
        """
        class Model:
            def __init__(self, **kwargs):
                self._secrets = kwargs["secrets"]
            def predict(self, request):
                print(f"guessed {len(request['guess'])} characters", flush=True)
                return {"matches": self._secrets["token"] == request["guess"]}
        """,
        "model_name: secretive\npython_version: py311\nsecrets:\n  token: null\n",
    )
    cp = cluster.start_controlplane()
    try:
        assert cp.client.post("/v1/secrets", json={"name": "token", "value": SECRET_VALUE}).json() == {"name": "token"}
        created = cp.push(model_dir)
        model_id, deployment_id = created["model_id"], created["id"]
        active = cp.wait_for_status(model_id, deployment_id, "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert active["status"] == "ACTIVE", (active, cp.log()[-3000:])
        answer = cp.client.post(f"/model-{model_id}/production/predict", json={"guess": SECRET_VALUE})
        assert answer.json() == {"matches": True}

        # The value is in the deployment's Secret (mounted), never in its Deployment or a log.
        with cluster.api.lock:
            secret = cluster.api.objects[("secrets", NAMESPACE, f"truss-secrets-{deployment_id}")]
            deployment = json.dumps(cluster.api.objects[("deployments", NAMESPACE, f"truss-deployment-{deployment_id}")])
        assert base64.b64decode(secret["data"]["token"]).decode() == SECRET_VALUE
        assert SECRET_VALUE not in deployment and SECRET_VALUE not in cp.log()

        # The deployment's replica log is its pod's.
        def replica_log() -> str:
            return cp.client.get(f"/v1/models/{model_id}/deployments/{deployment_id}/logs", params={"kind": "replica"}).text

        eventually(lambda: "guessed" in replica_log())
        assert "guessed 24 characters" in replica_log()

        # Its container dies: the pod is in CrashLoopBackOff, the replica FAILED, and replaced by a new pod.
        (pod,) = cluster.pods()
        cluster.client.kill(cluster.fake.container_of(pod["metadata"]["name"]))
        eventually(lambda: any(p["metadata"]["name"] != pod["metadata"]["name"] for p in cluster.pods()), timeout=120)
        eventually(lambda: "CrashLoopBackOff" in build_log(cp, model_id, deployment_id))
        cp.wait_for_status(model_id, deployment_id, "ACTIVE")
        eventually(lambda: cp.client.post(f"/model-{model_id}/production/predict", json={"guess": "x"}).status_code == 200)
        assert [p["metadata"]["name"] for p in cluster.pods()] != [pod["metadata"]["name"]]
        assert set(claimed_pods(cluster)) == live_replica_ids(cp, deployment_id)
        cp.client.delete(f"/v1/models/{model_id}").raise_for_status()
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()


def build_log(cp: ControlPlaneProcess, model_id: str, deployment_id: str) -> str:
    return cp.client.get(f"/v1/models/{model_id}/deployments/{deployment_id}/logs", params={"kind": "build"}).text


def test_truss_server_start_checks_the_kubernetes_options_before_starting(tmp_path: Path) -> None:
    environment = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}

    def start(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truss_cli", "server", "start", "--data-dir", str(tmp_path / "cp"), *args],
                              capture_output=True, text=True, timeout=60, env=environment)

    missing = start("--runtime", "kubernetes")
    assert missing.returncode == 2, missing
    assert "--runtime kubernetes needs --namespace NS (the namespace the models run in) and --registry" in missing.stderr
    bad_registry = start("--runtime", "kubernetes", "--namespace", "truss", "--registry", "https://registry.example.com/x")
    assert bad_registry.returncode == 2 and "without a scheme" in bad_registry.stderr
    assert not (tmp_path / "cp" / "controlplane.json").exists() and not (tmp_path / ".trussrc").exists()
