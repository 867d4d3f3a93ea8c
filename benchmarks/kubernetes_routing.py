#!/usr/bin/env python3
"""The Kubernetes runtime against the Docker runtime, side by side in one run (issue 13).

    TRUSS_BASE_IMAGE=truss-ci-base:bookworm python benchmarks/kubernetes_routing.py [--rounds 5] [--readiness-rounds 3]
                                           [--overhead-rounds 3] [--requests 2000] [--seconds 3] [--keep]

No cluster runs on this machine: the Kubernetes side is the fake cluster of the tests
(tests/kube_fake_cluster.py: a fake API server, a ReplicaSet-like controller, a kubelet whose
pods are real Docker containers pulled by digest from a local `docker-registry`, an
EndpointSlice controller). It runs in this process, so what it stores is timestamped on the
benchmark's own clock. Everything the fake does runs on a 0.25 s loop; a real cluster's
scheduler, kubelet and image pulls take longer, so only the part after a pod is Ready is
comparable with a real cluster, and that part is ours.

Two control planes (cp_support.py), `--runtime kubernetes` and `--runtime docker`, each serve
`examples/hello`, built from the same base image (the first push of each is untimed).

1. Predict through the gateway: to a pod (its IP from the EndpointSlice) and to a Docker
   replica (the loopback port Docker publishes), and straight to each without the gateway;
   predict_overhead.py's raw-socket client, REQUESTS sequential requests after a warm-up, then
   CONNECTIONS connections for SECONDS; alternating order, OVERHEAD_ROUNDS rounds, medians.
   The gateway requests carry the admin key (checked, stripped). Nothing is pinned (the
   replicas are containers, the gateways live in their control planes).
2. A pod that stops being ready (Kubernetes only): a second model with two pods whose health
   check a request straight to a pod turns off; requests through the gateway one after the
   other on one connection; from the kubelet's write of Ready=False, until when that pod still
   got requests, and when the EndpointSlice said so. READINESS_ROUNDS rounds.
3. Wake from zero, ROUNDS rounds: Kubernetes and Docker alternately. Each deployment is set to
   `min_replica 0, scale_down_delay 0, autoscaling_window 10`; a round waits until it is
   SCALED_TO_ZERO and its pod / container is gone, then times one production predict from
   send to answer (parked by the gateway, the deployment woken, the parked request released
   once a replica is ready), split by what the fake API server stored when: the Deployment's
   count written, the pod created, its container started (Docker's StartedAt, for both
   runtimes), the pod Ready, the slice's endpoint ready; pod Ready -> answer is ours.

Then 2 and 3 again for Kubernetes without the ready feed: the same control plane restarted
with `list`/`watch` on endpointslices forbidden (as with a Role that lacks them), so the
gateway routes by the reconciler's view (the fallback).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import docker
import httpx

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import predict_overhead as po
from cold_start import push, wait_for
from cp_support import REPO_ROOT, start_controlplane, stop_controlplane

sys.path.insert(0, str(REPO_ROOT / "tests"))  # the fake cluster is the tests' (the only cluster here)
from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import FakeCluster, write_kubeconfig
from registry_support import start_registry

NAMESPACE = "truss"
DOCKER_DEPLOYMENT_LABEL = "truss.deployment-id"  # runtimes/docker.py's LABEL_DEPLOYMENT
FORBIDDEN = (("list", "endpointslices"), ("watch", "endpointslices"))


class ClusterEvents:
    """When the fake API server stored what, on this process's perf_counter clock (a hook around
    its store; tests/kube_fake_cluster.py is left as it is): a Deployment's count changed
    ("scaled", the Deployment's name), a pod created ("created") and each change of its Ready
    condition ("ready", "unready") and of its endpoint's `ready` in a slice ("endpoint ready",
    "endpoint unready"), by the pod's name."""

    def __init__(self, api: FakeKubernetesApi) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, str]] = []  # (when, what, name)
        self._last: dict[tuple[str, str], object] = {}
        original = api._store

        def store(key: tuple[str, str, str], obj: dict, created: bool) -> dict:
            now = time.perf_counter()  # before watchers are woken: the event's own time
            plural, _, name = key
            with self.lock:
                if plural == "deployments":
                    self._change(now, "count", "scaled", name, obj.get("spec", {}).get("replicas"), None)
                elif plural == "pods":
                    if created:
                        self.seen.append((now, "created", name))
                    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                                for c in obj.get("status", {}).get("conditions", []))
                    self._change(now, "pod", "ready" if ready else "unready", name, ready, False)
                elif plural == "endpointslices":
                    for endpoint in obj.get("endpoints", []):
                        ready = endpoint.get("conditions", {}).get("ready") is not False
                        pod = endpoint.get("targetRef", {}).get("name", "")
                        self._change(now, "endpoint", "endpoint ready" if ready else "endpoint unready", pod, ready, False)
            return original(key, obj, created)

        api._store = store

    def _change(self, now: float, kind: str, what: str, name: str, value: object, initial: object) -> None:
        """Records `what` when `kind`'s value for `name` differs from the last one (`initial` before any)."""
        if self._last.get((kind, name), initial) != value:
            self.seen.append((now, what, name))
        self._last[(kind, name)] = value

    def first(self, what: str, after: float, pod_prefix: str = "") -> float | None:
        with self.lock:
            for when, kind, name in self.seen:
                if kind == what and when >= after and name.startswith(pod_prefix):
                    return when
        return None


def started_at(client: docker.APIClient, container: str, offset: float) -> float:
    """A container's StartedAt on the perf_counter clock (`offset` = time.time() - perf_counter())."""
    stamp = client.inspect_container(container)["State"]["StartedAt"]  # 2026-11-30T07:50:01.123456789Z
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    wall = datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}").replace(tzinfo=timezone.utc).timestamp()
    return wall - offset


# ---------------------------------------------------------------- predict through the gateway


def target(host: str, port: int, path: str, key: str | None) -> tuple[str, int, bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    if key:
        head += f"Authorization: Api-Key {key}\r\n"
    return host, port, (head + f"Content-Length: {len(po.BODY)}\r\n\r\n").encode() + po.BODY


def measure(host: str, port: int, request: bytes, requests: int, connections: int, seconds: float) -> dict:
    """predict_overhead's client, to `host` with `request` (the module reads HOST and request_bytes)."""
    po.HOST = host
    po.request_bytes = lambda _port: request
    seq = po.sequential(port, requests, warmup=200)
    con = po.concurrent(port, connections, seconds, warmup=1.0)
    return {**seq, **con}


def predict_overhead(targets: dict, rounds: int, requests: int, connections: int, seconds: float) -> dict:
    results: dict = {name: [] for name in targets}
    answers = {}
    for round_index in range(rounds):
        order = list(targets) if round_index % 2 == 0 else list(reversed(targets))
        for name in order:
            row = measure(*targets[name], requests, connections, seconds)
            answers[name] = row.pop("answer")
            results[name].append(row)
            print(f"round {round_index + 1}/{rounds} {name:28s} p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:8.1f} us  "
                  f"{row['rps']:6.0f} req/s", file=sys.stderr, flush=True)
        if len({repr(a) for a in answers.values()}) != 1:
            raise RuntimeError(f"the targets answer differently: {answers}")
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}


# ---------------------------------------------------------------- wake from zero


class Wakes:
    """One deployment woken from zero, round after round. `gone()`: no pod / container of it is
    left; `container_of()`: the container serving it now; `events`: the fake cluster's, for a
    Kubernetes deployment."""

    def __init__(self, label: str, client: httpx.Client, deployment: dict, gone, container_of, events=None) -> None:
        self.label, self.client, self.deployment = label, client, deployment
        self.gone, self.container_of, self.events = gone, container_of, events
        self.engine = docker.from_env().api
        self.rows: list[dict] = []

    def at_zero(self) -> None:
        wait_for(self.client, self.deployment, "SCALED_TO_ZERO")
        deadline = time.monotonic() + 120
        while not self.gone():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: the replica of the last round is still there")
            time.sleep(0.05)

    def wake(self) -> None:
        path = f"/model-{self.deployment['model_id']}/production/predict"
        offset = time.time() - time.perf_counter()
        sent = time.perf_counter()
        response = self.client.post(path, json={"name": "cold"})
        answered = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"{self.label}, round {len(self.rows) + 1}: {response.status_code} {response.text}")
        container = started_at(self.engine, self.container_of(), offset)
        row = {"total": answered - sent}
        if self.events is not None:
            name = f"truss-deployment-{self.deployment['id']}"  # the Deployment's, its pods' start with it
            at = {what: self.events.first(what, sent, name) for what in ("scaled", "created", "ready", "endpoint ready")}
            row.update({"to_scaled": at["scaled"] - sent, "to_pod": at["created"] - sent, "to_container": container - sent,
                        "to_ready": at["ready"] - sent, "to_endpoint": at["endpoint ready"] - sent,
                        "ready_to_answer": answered - at["ready"]})
        else:
            row["to_container"] = container - sent
        self.rows.append(row)
        print(f"{self.label}, round {len(self.rows)}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row.items()),
              file=sys.stderr, flush=True)


def wake_rounds(rounds: int, *variants: Wakes) -> None:
    """Each round wakes every variant once, one after the other, once all are at zero (they scale
    down together, `autoscaling_window` after their wake: the wait is shared)."""
    for _ in range(rounds):
        for variant in variants:
            variant.at_zero()
        time.sleep(0.5)  # settled: nothing of the last round still running
        for variant in variants:
            variant.wake()
            time.sleep(0.5)


# ---------------------------------------------------------------- a pod that stops being ready

TOGGLE_MODEL = """
import os

NOT_READY = "/tmp/not-ready"  # an emptyDir: each pod its own


class Model:
    def predict(self, request):
        if "ready" in request:  # sent straight to a pod, not through the gateway
            if request["ready"]:
                if os.path.exists(NOT_READY):
                    os.remove(NOT_READY)
            else:
                open(NOT_READY, "w").close()
        return {"pod": os.environ["TRUSS_REPLICA_ID"]}

    def is_healthy(self):
        return not os.path.exists(NOT_READY)
"""


class ReadinessLoss:
    """Two pods of one deployment take requests through the gateway, one after the other on one
    connection; one pod's health check starts failing (its readiness probe follows). Measured
    from the kubelet's write of Ready=False: until when that pod still got requests."""

    def __init__(self, label: str, client: httpx.Client, model_id: str, deployment_id: str, fake: FakeCluster,
                 events: ClusterEvents, watch_seconds: float = 2.0) -> None:
        self.label, self.client, self.model_id, self.fake, self.events = label, client, model_id, fake, events
        self.prefix = f"truss-deployment-{deployment_id}-"
        self.watch_seconds = watch_seconds
        self.rows: list[dict] = []

    def pods(self) -> dict[str, str]:
        return {p["metadata"]["name"]: p["status"]["podIP"] for p in self.fake.pods()
                if p["metadata"]["name"].startswith(self.prefix) and p.get("status", {}).get("podIP")
                and not p["metadata"].get("deletionTimestamp")}

    def answered_by(self) -> str:
        answer = self.client.post(f"/model-{self.model_id}/production/predict", json={})
        if answer.status_code != 200:
            raise RuntimeError(f"{self.label}: {answer.status_code} {answer.text}")
        return answer.json()["pod"]

    def both_serving(self) -> None:
        deadline = time.monotonic() + 60
        while {self.answered_by() for _ in range(20)} != set(self.pods()) or len(self.pods()) != 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: not both pods taking requests")
            time.sleep(0.1)

    def round(self) -> None:
        self.both_serving()
        pod, ip = min(self.pods().items())
        marked = time.perf_counter()
        set_ready(ip, False)
        answers: list[tuple[float, str]] = []
        unready = None
        while unready is None or time.perf_counter() < unready + self.watch_seconds:
            sent = time.perf_counter()
            answers.append((sent, self.answered_by()))
            unready = unready or self.events.first("unready", marked, pod)
            if time.perf_counter() > marked + 60:
                raise RuntimeError(f"{self.label}: pod {pod} never became not ready")
        late = [sent for sent, by in answers if by == pod and sent >= unready]
        endpoint = self.events.first("endpoint unready", marked, pod)
        row = {"last_request_after_unready": (max(late) - unready) if late else 0.0, "requests_after_unready": len(late),
               "slice_after_unready": endpoint - unready,
               "last_request_after_slice": max(sent for sent, by in answers if by == pod) - endpoint,
               "requests_after_slice": sum(1 for sent, by in answers if by == pod and sent >= endpoint),
               "longest_gap": max(b[0] - a[0] for a, b in zip(answers, answers[1:])), "rate": len(answers) / (answers[-1][0] - answers[0][0])}
        self.rows.append(row)
        print(f"{self.label}, round {len(self.rows)}: the not-ready pod's last request {row['last_request_after_unready'] * 1000:.0f} ms "
              f"after Ready=False, {len(late)} requests after it (at {row['rate']:.0f} req/s); the slice said so "
              f"{row['slice_after_unready'] * 1000:.0f} ms after Ready=False (its last request "
              f"{row['last_request_after_slice'] * 1000:+.0f} ms from the slice's word, {row['requests_after_slice']} requests after it; "
              f"longest gap between two requests {row['longest_gap'] * 1000:.0f} ms)", file=sys.stderr, flush=True)
        set_ready(ip, True)


def set_ready(ip: str, ready: bool) -> None:
    """Straight to the pod (not through the gateway): its readiness probe answers accordingly."""
    httpx.post(f"http://{ip}:8080/v1/models/model:predict", json={"ready": ready}, timeout=30, trust_env=False).raise_for_status()


def no_pods_left(fake: FakeCluster, prefix: str) -> None:
    """Waits until no pod named `prefix...` is left, terminating ones included."""
    deadline = time.monotonic() + 120
    while [p for p in fake.pods() if p["metadata"]["name"].startswith(prefix)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods {prefix}* still there after 120 s")
        time.sleep(0.05)


def two_replicas(client: httpx.Client, deployment: dict) -> None:
    """min = max = 2; a deployment at zero stays there until a request or its wake route wakes it."""
    client.patch(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/autoscaling_settings",
                 json={"min_replica": 2, "max_replica": 2}).raise_for_status()
    now = client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}").raise_for_status().json()
    if now["status"] == "SCALED_TO_ZERO":
        client.post(f"/model-{deployment['model_id']}/production/wake").raise_for_status()
    wait_for(client, deployment, "ACTIVE", timeout=120)


def scale_to_zero(client: httpx.Client, deployment: dict) -> None:
    client.patch(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/autoscaling_settings",
                 json={"min_replica": 0, "scale_down_delay": 0, "autoscaling_window": 10}).raise_for_status()  # 10: the least allowed


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "examples" / "hello")
    parser.add_argument("--rounds", type=int, default=5, help="wake-from-zero rounds per variant")
    parser.add_argument("--overhead-rounds", type=int, default=3)
    parser.add_argument("--readiness-rounds", type=int, default=3, help="a pod turning not ready, rounds per variant")
    parser.add_argument("--requests", type=int, default=2000, help="sequential predicts per target and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the concurrent run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    engine = docker.from_env(timeout=600).api
    base = Path(tempfile.mkdtemp(prefix="truss-k8s-bench-"))
    model_dir = base / "model"
    shutil.copytree(args.model_dir, model_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.setdefault("TRUSS_BASE_IMAGE", "truss-ci-base:bookworm")
    registry = start_registry(base / "registry")
    api = FakeKubernetesApi(namespaces=(NAMESPACE,))
    events = ClusterEvents(api)
    fake = FakeCluster(api, engine, base / "kubelet", NAMESPACE)
    kubeconfig = write_kubeconfig(base / "kubeconfig", api.url, NAMESPACE)
    k8s_args = ("--namespace", NAMESPACE, "--kubeconfig", str(kubeconfig), "--registry", f"{registry.host}/models")
    k8s_dir, docker_dir = base / "cp-kubernetes", base / "cp-docker"
    k8s = dock = None
    try:
        k8s = start_controlplane(k8s_dir, {**env, "TRUSS_CACHE_DIR": str(base / "cache-k8s")}, k8s_args, runtime="kubernetes")
        dock = start_controlplane(docker_dir, {**env, "TRUSS_CACHE_DIR": str(base / "cache-docker")}, runtime="docker")
        k_client = httpx.Client(base_url=k8s[1], headers={"Authorization": f"Api-Key {k8s[2]}"}, timeout=300, trust_env=False)
        d_client = httpx.Client(base_url=dock[1], headers={"Authorization": f"Api-Key {dock[2]}"}, timeout=300, trust_env=False)
        started = time.perf_counter()
        k_deployment, d_deployment = push(k_client, model_dir, "hello"), push(d_client, model_dir, "hello")
        wait_for(k_client, k_deployment, "ACTIVE")
        wait_for(d_client, d_deployment, "ACTIVE")
        print(f"warm-up pushes to ACTIVE (build, push to the registry): {time.perf_counter() - started:.1f} s", file=sys.stderr)

        # 1. Predict through the gateway.
        pods = [p for p in fake.pods() if p.get("status", {}).get("podIP")]
        pod_ip = pods[0]["status"]["podIP"]
        (container,) = engine.containers(filters={"label": f"{DOCKER_DEPLOYMENT_LABEL}={d_deployment['id']}"})
        docker_port = next(p["PublicPort"] for p in container["Ports"] if p.get("PrivatePort") == 8080 and p.get("PublicPort"))
        k_port, d_port = httpx.URL(k8s[1]).port, httpx.URL(dock[1]).port
        targets = {
            "pod, direct (pod IP)": target(pod_ip, 8080, po.PATH, None),
            "gateway -> pod": target("127.0.0.1", k_port, f"/model-{k_deployment['model_id']}/production/predict", k8s[2]),
            "docker replica, direct": target("127.0.0.1", docker_port, po.PATH, None),
            "gateway -> docker replica": target("127.0.0.1", d_port, f"/model-{d_deployment['model_id']}/production/predict", dock[2]),
        }
        overhead = predict_overhead(targets, args.overhead_rounds, args.requests, args.connections, args.seconds)

        # 2. A pod that stops being ready (a second model, two pods, on Kubernetes only).
        for client, deployment in ((k_client, k_deployment), (d_client, d_deployment)):
            scale_to_zero(client, deployment)
        toggle_dir = base / "toggle"
        toggle_dir.mkdir()
        (toggle_dir / "model").mkdir()
        (toggle_dir / "model" / "model.py").write_text(TOGGLE_MODEL)
        (toggle_dir / "config.yaml").write_text("model_name: toggle\npython_version: py311\n")
        toggle = push(k_client, toggle_dir, "toggle")
        two_replicas(k_client, toggle)
        loss_feed = ReadinessLoss("kubernetes, ready feed", k_client, toggle["model_id"], toggle["id"], fake, events)
        for _ in range(args.readiness_rounds):
            loss_feed.round()
        scale_to_zero(k_client, toggle)  # its pods would cost the reconciler's ticks time while hello wakes
        wait_for(k_client, toggle, "SCALED_TO_ZERO")
        no_pods_left(fake, f"truss-deployment-{toggle['id']}-")

        # 3. Wake from zero.
        prefix = f"truss-deployment-{k_deployment['id']}-"

        def no_pod() -> bool:
            return not [p for p in fake.pods() if p["metadata"]["name"].startswith(prefix)]

        def the_pod_container() -> str:
            (pod,) = [p["metadata"]["name"] for p in fake.pods()
                      if p["metadata"]["name"].startswith(prefix) and not p["metadata"].get("deletionTimestamp")]
            return fake.container_of(pod)

        def no_container() -> bool:
            return not engine.containers(filters={"label": f"{DOCKER_DEPLOYMENT_LABEL}={d_deployment['id']}"})

        def the_docker_container() -> str:
            (found,) = engine.containers(filters={"label": f"{DOCKER_DEPLOYMENT_LABEL}={d_deployment['id']}"})
            return found["Id"]

        feed = Wakes("kubernetes, ready feed", k_client, k_deployment, no_pod, the_pod_container, events)
        on_docker = Wakes("docker", d_client, d_deployment, no_container, the_docker_container)
        wake_rounds(args.rounds, feed, on_docker)
        # The fallback: the same control plane restarted with endpointslices out of its reach.
        stop_controlplane(k8s[0], k8s_dir)
        for verb, resource in FORBIDDEN:
            api.forbid(verb, resource)
        (k8s_dir / "controlplane.json").unlink(missing_ok=True)
        k8s = start_controlplane(k8s_dir, {**env, "TRUSS_CACHE_DIR": str(base / "cache-k8s")}, k8s_args, runtime="kubernetes")
        k_client = httpx.Client(base_url=k8s[1], headers={"Authorization": f"Api-Key {k8s[2]}"}, timeout=300, trust_env=False)
        wait_for(k_client, k_deployment, "SCALED_TO_ZERO")
        deadline = time.monotonic() + 60
        while "ready feed stopped" not in (k8s_dir / "controlplane.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("the restarted control plane did not fall back (no 'ready feed stopped' in its log)")
            time.sleep(0.1)
        two_replicas(k_client, toggle)
        loss_fallback = ReadinessLoss("kubernetes, fallback (no feed)", k_client, toggle["model_id"], toggle["id"], fake, events)
        for _ in range(args.readiness_rounds):
            loss_fallback.round()
        scale_to_zero(k_client, toggle)
        wait_for(k_client, toggle, "SCALED_TO_ZERO")
        no_pods_left(fake, f"truss-deployment-{toggle['id']}-")
        fallback = Wakes("kubernetes, fallback (no feed)", k_client, k_deployment, no_pod, the_pod_container, events)
        wake_rounds(args.rounds, fallback)
        for verb, resource in FORBIDDEN:
            api.allow(verb, resource)
    finally:
        for cp, directory in ((k8s, k8s_dir), (dock, docker_dir)):
            if cp is None:
                continue
            for model in ("hello", "toggle"):
                try:  # the deployments' pods, containers and images go with the model
                    httpx.delete(f"{cp[1]}/v1/models/{model}", headers={"Authorization": f"Api-Key {cp[2]}"}, timeout=120,
                                 trust_env=False)
                except httpx.HTTPError:
                    pass
            time.sleep(2)
            stop_controlplane(cp[0], directory)
        for leftover in engine.containers(all=True, filters={"label": f"truss.data-dir={docker_dir.resolve()}"}):
            engine.remove_container(leftover["Id"], force=True)
        fake.close()
        api.close()
        registry.stop()
        registry.forget_on_engine(engine)  # what a model's delete left (a delete that failed)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print(f"\n{'predict (examples/hello)':30s}{'p50 us':>10s}{'p99 us':>10s}{'req/s (' + str(args.connections) + ' conns)':>22s}")
    for name, row in overhead.items():
        print(f"{name:30s}{row['p50_us']:10.1f}{row['p99_us']:10.1f}{row['rps']:22.0f}")
    to_pod = overhead["gateway -> pod"]["p50_us"] - overhead["pod, direct (pod IP)"]["p50_us"]
    to_docker = overhead["gateway -> docker replica"]["p50_us"] - overhead["docker replica, direct"]["p50_us"]
    print(f"added by the gateway at p50: to a pod {to_pod:+.1f} us, to a docker replica {to_docker:+.1f} us; "
          f"gateway -> pod / gateway -> docker replica: p50 x{overhead['gateway -> pod']['p50_us'] / overhead['gateway -> docker replica']['p50_us']:.2f}, "
          f"throughput x{overhead['gateway -> pod']['rps'] / overhead['gateway -> docker replica']['rps']:.2f} "
          f"(medians of {args.overhead_rounds} rounds)")

    print("\na pod turning not ready, from the kubelet's Ready=False: its last request through the gateway "
          "(ms, median [min-max]) and how many it got")
    for variant in (loss_feed, loss_fallback):
        late = [r["last_request_after_unready"] * 1000 for r in variant.rows]
        count = [r["requests_after_unready"] for r in variant.rows]
        lag = [r["slice_after_unready"] * 1000 for r in variant.rows]
        after_slice = [r["last_request_after_slice"] * 1000 for r in variant.rows]
        count_after_slice = [r["requests_after_slice"] for r in variant.rows]
        rate = statistics.median(r["rate"] for r in variant.rows)
        print(f"{variant.label:32s}{statistics.median(late):8.0f} [{min(late):.0f}-{max(late):.0f}] ms"
              f"{statistics.median(count):8.0f} [{min(count)}-{max(count)}] requests at {rate:.0f} req/s; "
              f"the slice said so after {statistics.median(lag):.0f} [{min(lag):.0f}-{max(lag):.0f}] ms; "
              f"last request from the slice's word {statistics.median(after_slice):+.0f} [{min(after_slice):+.0f}-{max(after_slice):+.0f}] ms, "
              f"{statistics.median(count_after_slice):.0f} [{min(count_after_slice)}-{max(count_after_slice)}] requests after it")

    columns = (("total", "request -> answer"), ("to_scaled", "-> count 1"), ("to_pod", "-> pod created"),
               ("to_container", "-> container started"), ("to_ready", "-> pod Ready"), ("to_endpoint", "-> slice ready"),
               ("ready_to_answer", "pod Ready -> answer"))
    print("\nwake from zero, ms from the request unless said (median [min-max])")
    print(f"{'':32s}" + "".join(f"{title:>19s}" for _, title in columns))
    for variant in (feed, fallback, on_docker):
        cells = []
        for key, _ in columns:
            values = [r[key] * 1000 for r in variant.rows if key in r]
            cells.append(f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]" if values else "-")
        print(f"{variant.label:32s}" + "".join(f"{c:>19s}" for c in cells))


if __name__ == "__main__":
    main()
