"""The cluster suite (issue 13): a real control plane (`--runtime kubernetes`) driven by the
real CLI (`python -m truss_cli` in a subprocess, as a user types it), through four scenarios:

1. push → ACTIVE → predict, answered by the pod the replica claimed;
2. scale to zero (no pod, the Deployment at 0) and back on a request;
3. a rolling promotion under a steady load through the gateway: no request fails, and
   production answers from the new deployment afterwards;
4. the control plane killed (SIGKILL) and started again on the same database re-adopts every
   pod: the same pods with the same claims, no new pod, no count changed, predict works.

Every scenario runs twice, once per cluster:
- `fake`: tests/kube_fake_cluster.py, whose pods are real Docker containers pulled by digest
  from a local registry. This is what CI runs, so the suite is never dead code.
- `real`: the cluster `TRUSS_TEST_KUBECONFIG` names (tests/kube_real_cluster.py: registry and
  namespace from the environment, pod-network reachability checked up front). It skips,
  saying why, when the variable is unset, as on the machines this project is tested on.

The scenarios read the cluster through the runtime's own client (`KubernetesApi`), which
speaks to the fake and to a real API server alike. They follow each other in one module (one
control plane, one cluster): each leaves the model's production deployment ACTIVE. No timing
is asserted; waits poll until a state is reached (their timeouts only stop a hang).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import opened_store
from controlplane_support import ControlPlaneProcess, start_controlplane
from docker_support import base_image, engine
from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import FakeCluster, write_kubeconfig
from kube_real_cluster import KUBECONFIG_VARIABLE, NOT_CONFIGURED, real_cluster
from registry_support import LocalRegistry, start_registry
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi, PodState
from truss_cli.controlplane.runtimes.kubernetes.objects import DEPLOYMENT_ID_LABEL, MANAGED_BY, MANAGER, object_name
from truss_cli.controlplane.runtimes.kubernetes.runtime import CLAIM_ANNOTATION
from truss_cli.server.protocol import REPLICA_ID_HEADER

pytestmark = pytest.mark.docker

MODEL = "cluster-suite"
# A small model, with resources a laptop's cluster schedules four of (a rollout's surge).
CONFIG = 'model_name: cluster-suite\npython_version: py311\nresources:\n  cpu: "500m"\n  memory: 512Mi\n'
VERSIONED_MODEL = """
import time


class Model:
    def predict(self, request):
        time.sleep(0.05)  # in flight long enough to meet a replica that retires
        return {"version": VERSION, "greeting": "Hello, " + request.get("name", "world") + "!"}
"""
# Two replicas and a 50 % surge: two steps of one replica, each moving half the traffic.
ROLLING = {"rolling_deploy": True, "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 1}}
LOAD_THREADS = 2
# Seconds any one wait may take: a real cluster may pull a model image over a slow link. Below
# pytest-timeout's 600 s per test (pyproject.toml), so a wait fails with its own message first.
WAIT = 480.0


# -- the clusters ----------------------------------------------------------------------------


class Cluster(Protocol):
    name: str
    kubeconfig: Path
    namespace: str
    registry: str  # HOST[:PORT]/PREFIX: where the control plane pushes, what the nodes pull
    hint: str  # what to check when a deployment fails on it

    def close(self) -> None: ...


class FakeKubernetes:
    """tests/kube_fake_cluster.py: the fake API, its controller and kubelet, a local registry."""

    name = "fake"
    namespace = "truss"
    hint = ""

    def __init__(self, root: Path) -> None:
        client = engine()
        base_image(client)
        self.local_registry: LocalRegistry = start_registry(root / "registry")
        self.registry = f"{self.local_registry.host}/models"
        self.api = FakeKubernetesApi(namespaces=(self.namespace,))
        self.fake = FakeCluster(self.api, client, root / "kubelet", self.namespace)
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", self.api.url, self.namespace)

    def close(self) -> None:
        self.fake.close()
        self.api.close()
        self.local_registry.stop()
        # The model's delete (clean_up) removes its images; this catches a run that failed first.
        left = self.local_registry.forget_on_engine(self.fake.client)
        assert not left, f"images this suite pushed are still on the engine: {left}"


def make_cluster(kind: str, root: Path) -> Cluster:
    if kind == "fake":
        return FakeKubernetes(root)
    if not os.environ.get(KUBECONFIG_VARIABLE):
        pytest.skip(NOT_CONFIGURED)
    engine()  # builds run on this machine's engine: checked before a namespace is made
    return real_cluster(root)


# -- the suite: a control plane, the CLI, a window on the namespace ----------------------------


@dataclass
class Suite:
    cluster: Cluster
    root: Path
    kube: KubernetesApi
    cp: Optional[ControlPlaneProcess] = None
    admin_key: Optional[str] = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    def start_controlplane(self) -> ControlPlaneProcess:
        args = ("--namespace", self.cluster.namespace, "--kubeconfig", str(self.cluster.kubeconfig),
                "--registry", self.cluster.registry)
        self.cp = start_controlplane(self.root / "cp", runtime="kubernetes", admin_key=self.admin_key, extra_args=args)
        self.admin_key = self.cp.admin_key
        # The CLI's remote is this control plane (it listens on a new port after a restart).
        self.truss("remote", "add", "suite", self.cp.url, "--api-key", self.admin_key, "--replace")
        return self.cp

    def restart_after_kill(self) -> ControlPlaneProcess:
        assert self.cp is not None
        self.cp.kill()
        self.cp.close()
        return self.start_controlplane()

    def close(self) -> None:
        if self.cp is not None:
            self.cp.close()
            if self.cp.process.poll() is None:
                self.cp.terminate()
        self.kube.close()

    # ---- the CLI ----

    def truss(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        environment = {**os.environ, "HOME": str(self.home), "COLUMNS": "200", "TRUSS_CACHE_DIR": str(self.home / "cache")}
        done = subprocess.run([sys.executable, "-m", "truss_cli", *args], capture_output=True, text=True, env=environment,
                              timeout=WAIT + 60)
        if ok:
            assert done.returncode == 0, (f"truss {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n"
                                          f"{self.cluster.hint}\ncontrol plane log:\n{self.cp.log()[-3000:] if self.cp else ''}")
        return done

    def truss_json(self, *args: str) -> Any:
        return json.loads(self.truss(*args, "-o", "json").stdout)

    def push(self, model_dir: Path, *options: str) -> dict[str, Any]:
        """`truss push --wait`: the answer once the deployment is ACTIVE (a failure fails with its cause)."""
        return self.truss_json("push", str(model_dir), "--model-name", MODEL, "--wait", "--timeout-seconds", str(int(WAIT)),
                               *options)

    def predict(self, name: str) -> dict[str, Any]:
        return json.loads(self.truss("predict", "--model", MODEL, "-d", json.dumps({"name": name})).stdout)

    def deployments(self) -> dict[str, dict[str, Any]]:
        """The model's deployments by name, from the API: waits poll this, and a CLI process per
        look would cost a CPU's worth of Python start-ups (the CLI does what a user does)."""
        assert self.cp is not None
        listed = self.cp.client.get(f"/v1/models/{MODEL}/deployments").raise_for_status().json()["deployments"]
        return {d["name"]: d for d in listed}

    def autoscaling(self, deployment: str, *options: str) -> None:
        self.truss("deployments", "autoscaling", deployment, "--model", MODEL, *options)

    # ---- the cluster, as its API shows it ----

    def pods(self, deployment_id: Optional[str] = None) -> list[PodState]:
        labels = {MANAGED_BY: MANAGER, **({DEPLOYMENT_ID_LABEL: deployment_id} if deployment_id else {})}
        return self.kube.pods(labels)

    def wanted(self, deployment_id: str) -> int:
        return self.kube.read_scale(object_name(deployment_id)).wanted

    def live_replica_ids(self, deployment_id: str) -> set[str]:
        assert self.cp is not None
        with opened_store(self.cp) as store:
            return {r.handle["replica_id"] for r in store.replicas.list(deployment_id) if r.phase != "stopped"}


@pytest.fixture(scope="module", params=["fake", "real"])
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp(f"cluster-{request.param}")
    cluster = make_cluster(request.param, root)
    made = Suite(cluster, root, KubernetesApi.from_kubeconfig(cluster.kubeconfig, cluster.namespace))
    try:
        made.home.mkdir()
        made.start_controlplane()
        yield made
        clean_up(made)
    finally:
        try:
            made.close()
        finally:
            cluster.close()


def clean_up(suite: Suite) -> None:
    """Delete the model, so a namespace the suite shares (TRUSS_TEST_NAMESPACE) is left as it
    was: its objects and pods go. Best effort (a namespace the suite made goes whole anyway)."""
    deleted = suite.truss("models", "delete", MODEL, "--yes", ok=False)
    deadline = time.monotonic() + 120  # the pods' grace period is 30 s
    while deleted.returncode == 0 and suite.pods() and time.monotonic() < deadline:
        time.sleep(0.5)
    if deleted.returncode != 0 or suite.pods():
        print(f"cluster suite: model {MODEL} may be left in namespace {suite.cluster.namespace}: {deleted.stderr.strip()}")


def versioned_dir(suite: Suite, version: str) -> Path:
    directory = suite.root / "models" / version
    if not directory.exists():
        write_model_dir(directory, VERSIONED_MODEL.replace("VERSION", repr(version)), CONFIG)
    return directory


@pytest.fixture(scope="module")
def v1(suite: Suite) -> dict[str, Any]:
    """The model's first deployment (so production), ACTIVE."""
    return suite.push(versioned_dir(suite, "v1"))["deployment"]


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `check` until it returns something true (the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.5)
    return result


def production(suite: Suite) -> dict[str, Any]:
    """The deployment serving production."""
    (current,) = [d for d in suite.deployments().values() if d.get("is_production")]
    return current


# -- 1. push → ACTIVE → predict ----------------------------------------------------------------


def test_a_pushed_deployment_becomes_active_and_its_pod_answers(suite: Suite, v1: dict[str, Any]) -> None:
    assert v1["status"] == "ACTIVE"
    assert suite.predict("cluster") == {"version": "v1", "greeting": "Hello, cluster!"}

    # One pod, running the pushed image by digest from the registry, claimed by the live replica.
    (pod,) = suite.pods(v1["id"])
    assert pod.ready and pod.images[0].startswith(f"{suite.cluster.registry}/") and "@sha256:" in pod.images[0]
    assert {pod.annotations.get(CLAIM_ANNOTATION)} == suite.live_replica_ids(v1["id"])
    assert suite.wanted(v1["id"]) == 1

    # The gateway's answer came from that pod, and names the replica that claimed it (the
    # control plane's replica id, as on every runtime; the pod's own server says its pod's name).
    assert suite.cp is not None
    answer = suite.cp.client.post(f"/model-{v1['model_id']}/production/predict", json={"name": "pod"})
    assert answer.status_code == 200, answer.text
    assert answer.headers[REPLICA_ID_HEADER] == pod.annotations.get(CLAIM_ANNOTATION)


# -- 2. scale to zero and back -------------------------------------------------------------------


def test_scaled_to_zero_no_pod_runs_and_a_request_brings_one_back(suite: Suite, v1: dict[str, Any]) -> None:
    suite.autoscaling(v1["name"], "--min-replica", "0", "--autoscaling-window", "10", "--scale-down-delay", "2")
    try:
        eventually(lambda: suite.deployments()[v1["name"]]["status"] == "SCALED_TO_ZERO", "SCALED_TO_ZERO")
        eventually(lambda: not suite.pods(v1["id"]), "the pod to go")
        assert suite.wanted(v1["id"]) == 0

        # A request wakes it (parked at the gateway while a pod starts) and is answered.
        assert suite.predict("awake") == {"version": "v1", "greeting": "Hello, awake!"}
        (pod,) = suite.pods(v1["id"])
        assert suite.wanted(v1["id"]) == 1 and {pod.annotations.get(CLAIM_ANNOTATION)} == suite.live_replica_ids(v1["id"])
    finally:
        suite.autoscaling(v1["name"], "--min-replica", "1")  # awake for the scenarios after this one
    eventually(lambda: suite.deployments()[v1["name"]]["status"] == "ACTIVE", "ACTIVE again")


# -- 3. a rolling promotion with no failed request ------------------------------------------------


@dataclass
class Load:
    """Threads that call production's predict through the gateway, one request after another."""

    url: str
    api_key: str
    path: str
    answers: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)]
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

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Api-Key {self.api_key}"}, timeout=300) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.path, json={"name": "load"})
                    answer: dict[str, Any] = {"status": response.status_code}
                    if response.status_code == 200:
                        answer["version"] = response.json()["version"]
                    else:
                        answer["body"] = response.text[:300]
                except (httpx.HTTPError, ValueError, KeyError) as exc:  # no answer, or not the model's
                    answer = {"status": None, "body": repr(exc)}
                with self.lock:
                    self.answers.append(answer)


def test_a_rolling_promotion_under_load_fails_no_request(suite: Suite, v1: dict[str, Any]) -> None:
    assert suite.cp is not None
    # Production runs two replicas, so the promotion takes two steps of one replica each.
    suite.autoscaling(v1["name"], "--min-replica", "2", "--max-replica", "2")
    eventually(lambda: production(suite)["active_replica_count"] == 2 and len(suite.pods(v1["id"])) == 2,
               "production's two replicas")
    suite.truss("environments", "update", "production", "--model", MODEL, "--promotion-settings", json.dumps(ROLLING))

    v2 = suite.push(versioned_dir(suite, "v2"))["deployment"]  # ACTIVE, serving no environment yet

    with Load(suite.cp.url, suite.cp.admin_key, f"/model-{v1['model_id']}/production/predict") as load:
        eventually(lambda: load.count() >= 20, "the load to be answered")
        promoted = suite.truss_json("deployments", "promote", "--model", MODEL, v2["name"])
        assert (promoted["in_progress_promotion"] or {}).get("kind") == "rolling", promoted  # not an instant swap
        # `--watch` follows it to its end: exit 0 only when it SUCCEEDED.
        watched = suite.truss("rollout", "status", "--model", MODEL, "--watch", "-o", "json")
        during = load.count()
        eventually(lambda: load.count() >= during + 20, "requests after the promotion ended")

    final = json.loads(watched.stdout.splitlines()[-1])["promotion"]
    assert final["status"] == "SUCCEEDED" and final["steps"] == 2, final
    failed = [a for a in load.answers if a["status"] != 200]
    assert not failed, f"{len(failed)} of {len(load.answers)} requests failed, e.g. {failed[:3]}"
    versions = Counter(a["version"] for a in load.answers)
    assert versions["v1"] and versions["v2"], versions
    # Once it SUCCEEDED, production answers from the new deployment only.
    assert [a["version"] for a in load.answers[during:]] == ["v2"] * len(load.answers[during:])
    assert suite.predict("after") == {"version": "v2", "greeting": "Hello, after!"}
    assert production(suite)["id"] == v2["id"]


# -- 4. a control-plane restart re-adopts everything ----------------------------------------------


def steady_pods(suite: Suite) -> dict[str, Any]:
    """The model's pods and counts once nothing changes: every pod ready, claimed and not
    terminating, as many as each Deployment wants, the same on two looks in a row."""

    def look() -> dict[str, Any]:
        pods = suite.pods()
        deployments = {p.labels[DEPLOYMENT_ID_LABEL] for p in pods}
        return {"pods": {p.name: (p.labels[DEPLOYMENT_ID_LABEL], p.annotations.get(CLAIM_ANNOTATION), p.ready, p.deleting)
                         for p in pods},
                "wanted": {d: suite.wanted(d) for d in sorted(deployments)}}

    previous: dict[str, Any] = {}

    def settled() -> Optional[dict[str, Any]]:
        nonlocal previous
        now = look()
        stable = now == previous and now["pods"] and all(
            claim and ready and not deleting for _, claim, ready, deleting in now["pods"].values()) and all(
            wanted == sum(1 for d, *_ in now["pods"].values() if d == deployment) for deployment, wanted in now["wanted"].items())
        previous = now
        return now if stable else None

    return eventually(settled, "the model's pods to settle")


def test_a_killed_control_plane_started_again_readopts_every_pod(suite: Suite, v1: dict[str, Any]) -> None:
    active = {name for name, d in suite.deployments().items() if d["status"] == "ACTIVE"}
    before = steady_pods(suite)

    suite.restart_after_kill()  # SIGKILL, then a new process on the same database and data dir
    eventually(lambda: all(suite.deployments()[name]["status"] == "ACTIVE" for name in active), "ACTIVE after the restart")
    answer = suite.predict("again")
    assert answer["greeting"] == "Hello, again!"

    # The same pods, with the same claims (the replicas of before), none new, no count changed.
    after = steady_pods(suite)
    assert after == before, f"the restarted control plane changed the pods or counts:\nbefore {before}\nafter  {after}"
    for deployment_id in before["wanted"]:
        claims = {claim for d, claim, *_ in before["pods"].values() if d == deployment_id}
        assert suite.live_replica_ids(deployment_id) == claims
