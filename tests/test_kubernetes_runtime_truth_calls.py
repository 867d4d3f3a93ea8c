"""What the Kubernetes runtime's `status` says when the cluster misbehaves, against the fake API
alone (no containers; tests/test_kubernetes_runtime_truth.py runs the same on the fake cluster):
pods the API server refuses to create are a FAILED replica naming the refusal, and a pod its
kubelet calls Ready that the control plane cannot connect to is not READY, then FAILED saying
what to do."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import pytest

from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import write_kubeconfig
from test_kubernetes_runtime_calls import DEPLOYMENT, IMAGE, LABELS, spec
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi
from truss_cli.controlplane.runtimes.kubernetes.runtime import KubernetesRuntime
from truss_cli.image.registry import Registry
from truss_cli.server.status import FAILED, LOADING, STARTING

REFUSAL = ('pods "truss-deployment-d7p3z1wb-" is forbidden: violates PodSecurity "restricted:latest": '
           'allowPrivilegeEscalation != false (container "model" must set securityContext.allowPrivilegeEscalation=false)')


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",))
    yield server
    server.close()


@pytest.fixture
def api(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubernetesApi]:
    with KubernetesApi.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", fake.url), "truss") as made:
        yield made


def runtime(api: KubernetesApi, unreachable_after: float) -> KubernetesRuntime:
    return KubernetesRuntime(api, Registry("127.0.0.1:5000", "models"), images=None, unreachable_after=unreachable_after)


def set_deployment_conditions(fake: FakeKubernetesApi, conditions: list[dict]) -> None:
    """As the Deployment controller writes its status (the runtime never applies a status)."""
    with fake.lock:
        deployment = dict(fake.objects[("deployments", "truss", DEPLOYMENT)])
    fake.put("deployments", {**deployment, "status": {"replicas": 0, "conditions": conditions}})


def closed_address() -> str:
    """A loopback address where nothing listens on the model server's port 8080 (refused)."""
    for last in range(2, 250):
        address = f"127.77.77.{last}"
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex((address, 8080)) != 0:
                return address
    raise AssertionError("every 127.77.77.x:8080 answers")


def put_ready_pod(fake: FakeKubernetesApi, name: str, ip: str) -> None:
    """A pod its kubelet calls Ready (its probe reached the server) at `ip`."""
    fake.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(LABELS)},
                      "spec": {"containers": [{"name": "model", "image": IMAGE}]},
                      "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})


def test_pods_refused_by_the_api_server_fail_the_replica_with_the_refusal(api: KubernetesApi, fake: FakeKubernetesApi,
                                                                           tmp_path: Path) -> None:
    k8s = runtime(api, 10.0)
    replica = k8s.start(spec(tmp_path))
    assert k8s.status(replica).phase == STARTING  # no pod yet, and no refusal: it is coming
    set_deployment_conditions(fake, [
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated", "message": "Created new replica set"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": REFUSAL},
    ])
    refused = k8s.status(replica)
    assert refused.phase == FAILED
    assert refused.summary == f"pods of {DEPLOYMENT} cannot be created: {REFUSAL}"
    # The Deployment controller removes the condition once a create succeeds: starting again.
    set_deployment_conditions(fake, [{"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate", "message": ""}])
    assert k8s.status(replica).phase == STARTING


def test_a_ready_pod_the_control_plane_cannot_reach_is_not_ready_then_failed(api: KubernetesApi, fake: FakeKubernetesApi,
                                                                              tmp_path: Path) -> None:
    address = closed_address()
    patient, impatient = runtime(api, 3600.0), runtime(api, 0.0)
    replica = patient.start(spec(tmp_path))
    put_ready_pod(fake, f"{DEPLOYMENT}-aaaaa", address)
    seen = patient.status(replica)
    assert (seen.phase, seen.url) == (LOADING, f"http://{address}:8080")  # Ready by its kubelet, not by us
    failed = impatient.status(replica)
    assert failed.phase == FAILED
    assert failed.summary == (f"the control plane cannot reach pod {DEPLOYMENT}-aaaaa at http://{address}:8080 "
                              "(connection refused): route the pod network to this machine, or run the control "
                              "plane in the cluster (docs/kubernetes.md)")
