"""The Kubernetes runtime's bookkeeping against the fake API alone (no containers): the
count goes through `scale` and a re-apply never resets it; each replica claims its own pod;
`stop` marks, counts down and deletes its own pod, once. Pods are put by the test, as a
ReplicaSet would make them (tests/test_kubernetes_runtime.py runs them for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import write_kubeconfig
from truss_cli.controlplane.runtimes.base import GONE, Artifact, Handle, ReplicaSpec
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi
from truss_cli.controlplane.runtimes.kubernetes.runtime import CLAIM_ANNOTATION, DELETION_COST_ANNOTATION, KubernetesRuntime
from truss_cli.controlplane.runtimes.kubernetes.selection import KubernetesOptions, check_options
from truss_cli.errors import UsageError
from truss_cli.image.registry import Registry
from truss_cli.server.status import STARTING

DEPLOYMENT = "truss-deployment-d7p3z1wb"
LABELS = {"app.kubernetes.io/managed-by": "truss-cli", "truss.dev/model-id": "m4k2x9qa", "truss.dev/deployment-id": "d7p3z1wb"}


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",))
    yield server
    server.close()


@pytest.fixture
def runtime(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubernetesRuntime]:
    with KubernetesApi.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", fake.url), "truss") as api:
        yield KubernetesRuntime(api, Registry("127.0.0.1:5000", "models"), images=None)


def spec(tmp_path: Path) -> ReplicaSpec:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.yaml").write_text("model_name: hello\nresources:\n  cpu: '1'\n  memory: 512Mi\n")
    artifact = Artifact("kubernetes", "d7p3z1wb", "127.0.0.1:5000/models/truss-hello@sha256:" + "ab" * 32, {
        "image": "127.0.0.1:5000/models/truss-hello@sha256:" + "ab" * 32, "model_dir": str(model_dir),
        "model_id": "m4k2x9qa", "model_name": "hello", "deployment_name": "deployment-1"})
    return ReplicaSpec("d7p3z1wb", artifact)


IMAGE = "127.0.0.1:5000/models/truss-hello@sha256:" + "ab" * 32


def put_pod(fake: FakeKubernetesApi, name: str, ip: str | None = None, image: str = IMAGE) -> None:
    status = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "False"}]} if ip else {"phase": "Pending"}
    fake.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(LABELS)},
                      "spec": {"containers": [{"name": "model", "image": image}]}, "status": status})


def replicas(fake: FakeKubernetesApi) -> int:
    return fake.objects[("deployments", "truss", DEPLOYMENT)]["spec"]["replicas"]


def annotations(fake: FakeKubernetesApi, pod: str) -> dict:
    return fake.objects[("pods", "truss", pod)]["metadata"].get("annotations", {})


def test_starts_count_up_through_scale_and_a_reapply_keeps_the_count(runtime: KubernetesRuntime, fake: FakeKubernetesApi,
                                                                     tmp_path: Path) -> None:
    first = runtime.start(spec(tmp_path))
    assert (first.url, replicas(fake)) == (None, 1)  # created at the API server's default: this replica's
    runtime.start(spec(tmp_path))
    assert replicas(fake) == 2
    runtime.api.scale(DEPLOYMENT, 5)  # as the count stands after more starts
    runtime.start(spec(tmp_path))  # re-applies the objects: the count is not reset to 1
    assert replicas(fake) == 6
    # The count is the scale subresource's field, never the applier's.
    assert fake.owners[("deployments", "truss", DEPLOYMENT)][("spec", "replicas")][1] == "Update"


def test_each_replica_claims_its_own_pod_and_learns_its_url(runtime: KubernetesRuntime, fake: FakeKubernetesApi, tmp_path: Path) -> None:
    one, two = runtime.start(spec(tmp_path)), runtime.start(spec(tmp_path))
    assert runtime.status(one).phase == STARTING  # no pod yet
    put_pod(fake, f"{DEPLOYMENT}-aaaaa", "10.0.0.1")
    put_pod(fake, f"{DEPLOYMENT}-bbbbb")
    seen_one, seen_two = runtime.status(one), runtime.status(two)
    assert annotations(fake, f"{DEPLOYMENT}-aaaaa")[CLAIM_ANNOTATION] == one.replica_id  # the one with an address first
    assert annotations(fake, f"{DEPLOYMENT}-bbbbb")[CLAIM_ANNOTATION] == two.replica_id
    assert seen_one.url == "http://10.0.0.1:8080" and seen_two.url is None
    assert {h.replica_id for h in runtime.list()} == {one.replica_id, two.replica_id}


def test_a_replica_never_claims_a_pod_of_another_image(runtime: KubernetesRuntime, fake: FakeKubernetesApi, tmp_path: Path) -> None:
    """While a Deployment rolls to a new image (a development rebuild), a pod of the old image
    left unclaimed must not serve the replica started for the new one."""
    replica = runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-old00", "10.0.0.9", image="127.0.0.1:5000/models/truss-hello@sha256:" + "cd" * 32)
    assert runtime.status(replica).phase == STARTING
    put_pod(fake, f"{DEPLOYMENT}-new00", "10.0.0.10")
    assert runtime.status(replica).url == "http://10.0.0.10:8080"
    assert CLAIM_ANNOTATION not in annotations(fake, f"{DEPLOYMENT}-old00")


def test_stop_marks_counts_down_and_deletes_its_own_pod_once(runtime: KubernetesRuntime, fake: FakeKubernetesApi, tmp_path: Path) -> None:
    one, two = runtime.start(spec(tmp_path)), runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-aaaaa", "10.0.0.1")
    put_pod(fake, f"{DEPLOYMENT}-bbbbb", "10.0.0.2")
    runtime.status(one), runtime.status(two)
    events = len(fake.events)
    runtime.stop(one)
    assert replicas(fake) == 1
    assert ("pods", "truss", f"{DEPLOYMENT}-aaaaa") not in fake.objects
    marked = [e for e in fake.events[events:] if e[2] == "pods" and e[3]["metadata"]["name"].endswith("aaaaa")]
    assert marked[0][3]["metadata"]["annotations"][DELETION_COST_ANNOTATION] == str(-(2**31))
    three = runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-ccccc")  # the third replica's pod, not claimed yet
    runtime.stop(one)  # again: nothing more (not the third replica's pod)
    assert replicas(fake) == 2
    assert {f"{DEPLOYMENT}-bbbbb", f"{DEPLOYMENT}-ccccc"} <= {key[2] for key in fake.objects if key[0] == "pods"}
    runtime.status(three)
    assert {h.replica_id for h in runtime.list()} == {two.replica_id, three.replica_id}
    # A claimed pod that went, once it had an address, is GONE (the reconciler restarts it).
    fake.remove("pods", f"{DEPLOYMENT}-bbbbb")
    assert runtime.status(Handle.from_dict({**two.to_dict(), "url": "http://10.0.0.2:8080"})).phase == GONE


def test_the_options_belong_together() -> None:
    with pytest.raises(UsageError, match="needs --namespace NS .* and --registry HOST/PREFIX"):
        check_options("kubernetes", KubernetesOptions())
    with pytest.raises(UsageError, match="--registry: only with --runtime kubernetes"):
        check_options("docker", KubernetesOptions(registry="127.0.0.1:5000/m"))
    check_options("kubernetes", KubernetesOptions("truss", None, "127.0.0.1:5000/m"))
