"""Where a replica's claim goes when a rolling update replaces its pod, against the fake API
alone (no containers; tests/test_kubernetes_rolling.py rolls real pods): a claimed pod
deleted by someone else than `stop` hands its claim to a Ready unclaimed pod of the same
image, so the replica keeps serving and nothing restarts; with none, the replica is GONE as
before. Pods are put by the test, as the ReplicaSets would make them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import _deletion_rank, write_kubeconfig
from test_kubernetes_runtime_calls import DEPLOYMENT, IMAGE, LABELS, annotations, replicas, spec
from test_kubernetes_runtime_truth_calls import closed_address
from truss_cli.controlplane.runtimes.base import GONE, Handle
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi
from truss_cli.controlplane.runtimes.kubernetes.runtime import CLAIM_ANNOTATION, KubernetesRuntime
from truss_cli.image.registry import Registry

OTHER_IMAGE = "127.0.0.1:5000/models/truss-hello@sha256:" + "cd" * 32


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    server = FakeKubernetesApi(namespaces=("truss",))
    yield server
    server.close()


@pytest.fixture
def runtime(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubernetesRuntime]:
    with KubernetesApi.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", fake.url), "truss") as api:
        # Patient: the pods' addresses answer nothing here, which must not fail the replica.
        yield KubernetesRuntime(api, Registry("127.0.0.1:5000", "models"), images=None, unreachable_after=3600.0)


def put_pod(fake: FakeKubernetesApi, name: str, ip: str, ready: bool, image: str = IMAGE) -> None:
    fake.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(LABELS)},
                      "spec": {"containers": [{"name": "model", "image": image}]},
                      "status": {"phase": "Running", "podIP": ip,
                                 "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def with_url(handle: Handle, url: str | None) -> Handle:
    """The handle as the reconciler keeps it: with the URL a status brought."""
    return Handle.from_dict({**handle.to_dict(), "url": url})


def test_a_replica_follows_its_pod_to_the_ready_pod_a_rollout_made(runtime: KubernetesRuntime, fake: FakeKubernetesApi,
                                                                     tmp_path: Path) -> None:
    address = closed_address()
    replica = runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-old00", address, ready=True)
    replica = with_url(replica, runtime.status(replica).url)
    # The rollout: a new pod of another image (a rebuild's) and a not-ready one of the same
    # image are not taken; the replica's pod is deleted by its ReplicaSet, not by `stop`.
    put_pod(fake, f"{DEPLOYMENT}-image", address, ready=True, image=OTHER_IMAGE)
    put_pod(fake, f"{DEPLOYMENT}-start", address, ready=False)
    fake.terminate_pod(f"{DEPLOYMENT}-old00")
    assert runtime.status(replica).phase == GONE  # nothing ready to take over: restarted, as before
    put_pod(fake, f"{DEPLOYMENT}-new00", address, ready=True)
    moved = runtime.status(replica)
    assert moved.phase != GONE and moved.url == f"http://{address}:8080"
    assert annotations(fake, f"{DEPLOYMENT}-new00")[CLAIM_ANNOTATION] == replica.replica_id
    assert CLAIM_ANNOTATION not in annotations(fake, f"{DEPLOYMENT}-image")
    assert CLAIM_ANNOTATION not in annotations(fake, f"{DEPLOYMENT}-start")
    # The old pod, still terminating with the old claim, no longer counts as the replica's.
    assert [(h.replica_id, h.url) for h in runtime.list()] == [(replica.replica_id, f"http://{address}:8080")]
    # Once the old pod is removed, the replica is still on the new one.
    fake.remove("pods", f"{DEPLOYMENT}-old00")
    assert runtime.status(replica).phase != GONE
    # And its stop deletes the pod it moved to, counting down once.
    runtime.stop(replica)
    assert replicas(fake) == 0
    assert ("pods", "truss", f"{DEPLOYMENT}-new00") not in fake.objects
    assert {key[2] for key in fake.objects if key[0] == "pods"} == {f"{DEPLOYMENT}-image", f"{DEPLOYMENT}-start"}


def test_a_stopped_replicas_pod_hands_its_claim_to_nobody(runtime: KubernetesRuntime, fake: FakeKubernetesApi,
                                                          tmp_path: Path) -> None:
    address = closed_address()
    one, two = runtime.start(spec(tmp_path)), runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-aaaaa", address, ready=True)
    one = with_url(one, runtime.status(one).url)
    runtime.stop(one)  # marks and deletes its pod
    put_pod(fake, f"{DEPLOYMENT}-bbbbb", address, ready=True)  # the other replica's, not claimed yet
    assert runtime.status(one).phase == GONE
    assert CLAIM_ANNOTATION not in annotations(fake, f"{DEPLOYMENT}-bbbbb")
    runtime.status(two)
    assert annotations(fake, f"{DEPLOYMENT}-bbbbb")[CLAIM_ANNOTATION] == two.replica_id


def test_a_replicaset_scaling_down_takes_an_unclaimed_ready_pod_before_a_claimed_one(
    runtime: KubernetesRuntime, fake: FakeKubernetesApi, tmp_path: Path
) -> None:
    """Kubernetes' order among Ready pods is the lowest pod-deletion-cost first, then the
    newest (`_deletion_rank`): without the claim's cost, the newer, claimed pod would go."""
    address = closed_address()
    replica = runtime.start(spec(tmp_path))
    put_pod(fake, f"{DEPLOYMENT}-bbbbb", address, ready=True)  # the older
    put_pod(fake, f"{DEPLOYMENT}-aaaaa", address, ready=True)  # the newer, first by name: claimed
    runtime.status(replica)
    assert annotations(fake, f"{DEPLOYMENT}-aaaaa")[CLAIM_ANNOTATION] == replica.replica_id
    pods = [fake.objects[("pods", "truss", f"{DEPLOYMENT}-{n}")] for n in ("aaaaa", "bbbbb")]
    assert min(pods, key=_deletion_rank)["metadata"]["name"] == f"{DEPLOYMENT}-bbbbb"
