"""What a user sees when the cluster misbehaves, end to end: a real control plane
(`--runtime kubernetes`) against the fake cluster whose pods are real containers
(tests/kube_fake_cluster.py), one of each shared by the module.

- Pods the API server refuses (Pod Security, a quota): the deployment is DEPLOY_FAILED with
  the refusal, not DEPLOYING forever.
- Pods Ready by their kubelet that the control plane cannot reach (a pod network not routed
  to its machine): DEPLOY_FAILED saying so and what to do, not ACTIVE with every predict 503.
- A model that allocates past its memory limit: DEPLOY_FAILED naming OOMKilled.
- A working deployment's answers carry the control plane's replica id (the pod's claim), not
  the pod's name.

The fast half, against the fake API alone: tests/test_kubernetes_runtime_truth_calls.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import opened_store
from controlplane_support import ControlPlaneProcess
from test_kubernetes_runtime import CLAIM, HELLO, Cluster
from test_kubernetes_runtime_truth_calls import closed_address
from truss_cli.server.protocol import REPLICA_ID_HEADER

pytestmark = pytest.mark.docker

POD_SECURITY = ('violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
                '(container "model" must set securityContext.allowPrivilegeEscalation=false)')


class Plane:
    def __init__(self, cluster: Cluster, cp: ControlPlaneProcess) -> None:
        self.cluster, self.cp = cluster, cp

    def push_and_settle(self, model_dir: Path) -> dict[str, Any]:
        """Push, and the deployment once it is ACTIVE or failed (the timeout only stops a hang)."""
        created = self.cp.push(model_dir)
        return self.cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED",
                                       timeout=300)

    def pods_of(self, deployment_id: str) -> list[dict]:
        return [p for p in self.cluster.pods() if p["metadata"]["labels"].get("truss.dev/deployment-id") == deployment_id]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    cluster = Cluster(tmp_path_factory.mktemp("kubernetes-truth"))
    cp = None
    try:
        cp = cluster.start_controlplane()
        yield Plane(cluster, cp)
    finally:
        if cp is not None:
            cp.close()
            if cp.process.poll() is None:
                cp.terminate()
        cluster.close()


def test_pods_the_api_server_refuses_fail_the_deployment_with_its_refusal(plane: Plane) -> None:
    plane.cluster.fake.refuse_pods(POD_SECURITY)
    try:
        failed = plane.push_and_settle(HELLO)
    finally:
        plane.cluster.fake.refuse_pods(None)
    name = f"truss-deployment-{failed['id']}"
    assert failed["status"] == "DEPLOY_FAILED", (failed, plane.cp.log()[-3000:])
    assert failed["status_detail"] == f'pods of {name} cannot be created: pods "{name}-" is forbidden: {POD_SECURITY}'
    assert plane.pods_of(failed["id"]) == []


def test_ready_pods_the_control_plane_cannot_reach_fail_the_deployment_saying_what_to_do(plane: Plane) -> None:
    address = closed_address()
    plane.cluster.fake.misreport_pod_ips(address)  # what a laptop without a route to the pod network sees
    try:
        failed = plane.push_and_settle(HELLO)
    finally:
        plane.cluster.fake.misreport_pod_ips(None)
    assert failed["status"] == "DEPLOY_FAILED", (failed, plane.cp.log()[-3000:])
    detail = failed["status_detail"]
    assert detail.startswith(f"the control plane cannot reach pod truss-deployment-{failed['id']}-"), detail
    assert detail.endswith(f" at http://{address}:8080 (connection refused): route the pod network to this machine, "
                           "or run the control plane in the cluster (docs/kubernetes.md)"), detail


def test_a_model_past_its_memory_limit_is_oom_killed_and_says_so(plane: Plane, tmp_path: Path) -> None:
    hog = write_model_dir(
        tmp_path / "hog",
        """
        class Model:
            def load(self):
                self.hog = b"x" * (1024 * 2**20)  # 1 GiB, every page touched, past the 512Mi limit

            def predict(self, request):
                return {"ok": True}
        """,
        "model_name: hog\npython_version: py311\nresources:\n  cpu: '1'\n  memory: 512Mi\n",
    )
    failed = plane.push_and_settle(hog)
    assert failed["status"] == "DEPLOY_FAILED", (failed, plane.cp.log()[-3000:])
    assert "last exit: OOMKilled" in failed["status_detail"], failed["status_detail"]


def test_answers_name_the_control_planes_replica_not_the_pod(plane: Plane) -> None:
    active = plane.push_and_settle(HELLO)
    assert active["status"] == "ACTIVE", (active, plane.cp.log()[-3000:])
    (pod,) = plane.pods_of(active["id"])
    answer = plane.cp.client.post(f"/model-{active['model_id']}/deployment/{active['id']}/predict", json={"name": "id"})
    assert answer.status_code == 200, answer.text
    with opened_store(plane.cp) as store:
        (row,) = [r for r in store.replicas.list(active["id"]) if r.phase != "stopped"]
    assert answer.headers[REPLICA_ID_HEADER] == row.handle["replica_id"] == pod["metadata"]["annotations"][CLAIM]
    assert answer.headers[REPLICA_ID_HEADER] != pod["metadata"]["name"]
