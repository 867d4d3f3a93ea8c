"""A real Kubernetes cluster (kind, k3s, ...) for tests/test_kubernetes_cluster.py, configured
by the environment (no tests of its own; docs/kubernetes.md, "The real-cluster suite"):

- `TRUSS_TEST_KUBECONFIG`: the kubeconfig file (its current context). Unset: the real-cluster
  half of the suite skips, saying so.
- `TRUSS_TEST_REGISTRY`: `HOST[:PORT]/PREFIX` this machine pushes to and the cluster's nodes
  pull from. Unset: a local `docker-registry` on 127.0.0.1 (tests/registry_support.py), which
  only nodes on this machine reach; containerd (k3s) pulls from a localhost registry over
  plain HTTP without configuration. A kind cluster's nodes are containers, so kind needs its
  own registry (the suite fails naming the recipe).
- `TRUSS_TEST_NAMESPACE`: an existing namespace to work in (left in place). Unset: a fresh
  `truss-test-<hex>`, enforcing Pod Security `restricted`, is created through the API and
  deleted at the end.

What can be checked before anything is pushed is checked up front, and a cluster that cannot
run the suite fails it with what to do (the user asked for a real cluster, so a skip would
hide it): the API answers these credentials, and pod IPs are reachable from this machine
(the control plane's gateway sends requests straight to them). Reachability is judged with a
pod already running in the cluster (a TCP connection to a port one of its containers declares:
an answer, even a refusal, proves the route); kind needs a route to its nodes' pod CIDRs. A
network that answers for any address (a transparent proxy) passes this check; the kubelet
still finds the pods ready, so the first deployment becomes ACTIVE and its first predict fails
with 503 "no replica of the target could be reached", and the failure says to check the route.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx2
import pytest
from lightkube import ALL_NS, ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node, Pod

from registry_support import LocalRegistry, start_registry

KUBECONFIG_VARIABLE = "TRUSS_TEST_KUBECONFIG"
REGISTRY_VARIABLE = "TRUSS_TEST_REGISTRY"
NAMESPACE_VARIABLE = "TRUSS_TEST_NAMESPACE"
DOCS = "docs/kubernetes.md, section 'The real-cluster suite'"
NOT_CONFIGURED = (f"{KUBECONFIG_VARIABLE} is not set: the real-cluster suite needs a cluster (kind or k3s on a laptop; "
                  f"none runs on the machines this project is tested on). See {DOCS}.")
REACH_SECONDS = 3.0  # a connection attempt to a pod IP; no answer by then counts as unreachable
PROBED_PODS = 5  # pods tried before the network is declared unreachable

KIND_REGISTRY_RECIPE = (
    "kind nodes are containers, so they cannot pull from this machine's 127.0.0.1: run kind's local registry "
    "(https://kind.sigs.k8s.io/docs/user/local-registry/: a `registry:2` container named kind-registry on "
    "localhost:5001, joined to the kind network, and a containerd hosts.toml per node for localhost:5001) and set "
    f"{REGISTRY_VARIABLE}=localhost:5001/truss-test"
)


@dataclass
class RealCluster:
    """The cluster the suite runs on: a namespace there, a registry its nodes pull from."""

    kubeconfig: Path
    namespace: str
    registry: str  # HOST[:PORT]/PREFIX, as `--registry` takes it
    client: Client
    created_namespace: bool
    local_registry: Optional[LocalRegistry] = None
    hint: str = field(default="")  # what to check when a deployment fails on this cluster

    name = "real"

    def close(self) -> None:
        try:
            if self.created_namespace:  # everything the suite made goes with it
                self.client.delete(Namespace, self.namespace)
        finally:
            self.client.close()
            if self.local_registry is not None:
                self.local_registry.stop()


def real_cluster(work_dir: Path) -> RealCluster:
    """The cluster `TRUSS_TEST_KUBECONFIG` names, checked; skips when it is unset."""
    configured = os.environ.get(KUBECONFIG_VARIABLE)
    if not configured:
        pytest.skip(NOT_CONFIGURED)
    kubeconfig = Path(configured).expanduser()
    if not kubeconfig.is_file():
        pytest.fail(f"{KUBECONFIG_VARIABLE}={configured}: no such file (give the kubeconfig kubectl uses, e.g. ~/.kube/config)")
    try:
        config = KubeConfig.from_file(kubeconfig).get()
    except Exception as exc:  # lightkube's ConfigError, a YAML error, a missing key: all say the file is unusable
        pytest.fail(f"cannot use the kubeconfig {kubeconfig}: {exc} (check it with `kubectl --kubeconfig {kubeconfig} config view`)")
    if config is None:
        pytest.fail(f"the kubeconfig {kubeconfig} has no current context (`kubectl config use-context NAME`)")
    client = Client(config, trust_env=False)
    try:
        nodes = _nodes(client, config.cluster.server)
        unreachable = unreachable_pod_network(client, nodes)
        if unreachable:
            pytest.fail(unreachable)
        registry, local = _registry(work_dir, nodes)
        namespace, created = _namespace(client)
    except BaseException:
        client.close()
        raise
    hint = (f"On a real cluster: the nodes pull model images from {registry} (an ImagePullBackOff means they cannot "
            "reach it, or need it configured as a plain-HTTP registry), and the gateway sends requests to pod IPs "
            f"(a 503 'no replica of the target could be reached' means this machine has no route to them). See {DOCS}.")
    return RealCluster(kubeconfig, namespace, registry, client, created, local, hint)


def _nodes(client: Client, server: str) -> Optional[list[Node]]:
    """The cluster's nodes; None when these credentials may not list them. Fails when the API does not answer."""
    try:
        return list(client.list(Node))
    except ApiError as exc:
        if exc.status.code == 403:
            return None
        pytest.fail(f"the Kubernetes API at {server} answered {exc.status.code}: {exc.status.message}")
    except httpx2.TransportError as exc:
        pytest.fail(f"cannot reach the Kubernetes API at {server} ({exc}); is the cluster up? (`kubectl cluster-info`)")


def unreachable_pod_network(client: Client, nodes: Optional[list[Node]]) -> Optional[str]:
    """Why pod IPs cannot be reached from here, with what to do; None when they can (or no pod shows either way)."""
    try:
        pods = list(client.list(Pod, namespace=ALL_NS))
    except ApiError:
        return None  # not allowed to look: the first predict will tell
    tried = []
    for pod in pods:
        target = _probe_target(pod)
        if target is None:
            continue
        if _answers(*target):
            return None
        tried.append(f"{pod.metadata.namespace}/{pod.metadata.name} at {target[0]}:{target[1]}")
        if len(tried) == PROBED_PODS:
            break
    if not tried:
        return None
    routes = _route_commands(nodes)
    return ("pod IPs are not reachable from this machine, and the control plane's gateway sends requests straight to them "
            f"(no answer from {'; '.join(tried)}). "
            + (f"For kind on Linux, route each node's pod CIDR through the node: {' && '.join(routes)}. " if routes else "")
            + "k3s on this machine needs nothing; kind or minikube in Docker Desktop (macOS, Windows) cannot be reached "
            f"this way: run the suite on Linux. See {DOCS}.")


def _probe_target(pod: Pod) -> Optional[tuple[str, int]]:
    """(pod IP, a TCP port one of its containers declares) of a running pod on the pod network."""
    spec, status = pod.spec, pod.status
    if spec is None or status is None or status.phase != "Running" or not status.podIP or spec.hostNetwork:
        return None
    for container in spec.containers or []:
        for port in container.ports or []:
            if (port.protocol or "TCP") == "TCP":
                return status.podIP, port.containerPort
    return None


def _answers(ip: str, port: int) -> bool:
    """Whether a TCP connection gets any answer: accepted or refused both prove the route."""
    try:
        with socket.create_connection((ip, port), timeout=REACH_SECONDS):
            return True
    except ConnectionRefusedError:
        return True
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return True
        return False


def _route_commands(nodes: Optional[list[Node]]) -> list[str]:
    commands = []
    for node in nodes or []:
        cidr = node.spec.podCIDR if node.spec else None
        address = next((a.address for a in (node.status.addresses or []) if a.type == "InternalIP"), None) if node.status else None
        if cidr and address:
            commands.append(f"sudo ip route add {cidr} via {address}")
    return commands


def _registry(work_dir: Path, nodes: Optional[list[Node]]) -> tuple[str, Optional[LocalRegistry]]:
    """`TRUSS_TEST_REGISTRY`, else a local registry on loopback (k3s on this machine pulls from it)."""
    configured = os.environ.get(REGISTRY_VARIABLE)
    if configured:
        return configured.strip().rstrip("/"), None
    if any((node.spec.providerID or "").startswith("kind://") for node in nodes or [] if node.spec):
        pytest.fail(KIND_REGISTRY_RECIPE)
    local = start_registry(work_dir / "registry")
    return f"{local.host}/truss-test", local


def _namespace(client: Client) -> tuple[str, bool]:
    """`TRUSS_TEST_NAMESPACE` (it must exist), else a fresh one the suite creates: (name, created)."""
    configured = os.environ.get(NAMESPACE_VARIABLE)
    if configured:
        try:
            client.get(Namespace, configured)
        except ApiError as exc:
            pytest.fail(f"{NAMESPACE_VARIABLE}={configured}: {exc.status.message} (create it, or unset the variable "
                        "to let the suite create and delete a namespace of its own)")
        return configured, False
    name = f"truss-test-{secrets.token_hex(4)}"
    # Pod Security `restricted` enforced, as `truss server manifests --create-namespace` does: the
    # model pods claim to meet it (docs/kubernetes.md), and only admission on a real cluster can tell.
    labels = {"app.kubernetes.io/part-of": "truss-cli-tests", "pod-security.kubernetes.io/enforce": "restricted"}
    try:
        client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    except ApiError as exc:
        pytest.fail(f"cannot create the namespace {name}: {exc.status.message} (set {NAMESPACE_VARIABLE} to one you may use)")
    return name, True
