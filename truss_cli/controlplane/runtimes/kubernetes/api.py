"""The Kubernetes runtime's one door to the API server: a small wrapper over lightkube.

Objects go in and come out as plain dicts (what `objects.py` builds), in one namespace the
user named, for the few kinds the runtime touches (`KINDS`). Every call is synchronous (the
Runtime protocol is; lightkube's `Client` is thread-safe), except `watch_endpoint_slices`,
an async iterator for the gateway's event loop (lightkube's `AsyncClient`).

Writes are server-side apply with the field manager `truss-cli` and `force=True`: the
control plane owns these objects, so after a `kubectl edit` or `kubectl scale` by a person,
the next reconcile takes the fields back instead of failing on a 409 forever; and an apply
after a control-plane restart re-adopts what exists instead of colliding with it.

Errors come back as `TrussError`s a user can act on: 403 names the verb and resource the
Role lacks, 404 on the namespace says to create it, an unreachable server names its URL.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping, Optional, Type

import httpx2
import yaml
from lightkube import AsyncClient, Client
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, KubeConfig, SingleConfig
from lightkube.core import resource as lightkube_resource
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from truss_cli.controlplane.runtimes.base import LogLine
# The EndpointSlice controller copies a Service's labels onto its slices, so a slice names its
# deployment by the label objects.py puts on the Service.
from truss_cli.controlplane.runtimes.kubernetes.objects import DEPLOYMENT_ID_LABEL
from truss_cli.errors import TrussError

FIELD_MANAGER = "truss-cli"

# The kinds the runtime reads or writes; the Role `truss server manifests` prints grants
# exactly these (docs/kubernetes.md).
KINDS: dict[str, Type[lightkube_resource.NamespacedResource]] = {
    "Deployment": Deployment,
    "Service": Service,
    "PodDisruptionBudget": PodDisruptionBudget,
    "Secret": Secret,
    "Pod": Pod,
    "EndpointSlice": EndpointSlice,
}

# A dropped watch is retried from its last resourceVersion after this pause, growing to the cap.
WATCH_RETRY_SECONDS = (0.2, 5.0)

@dataclass(frozen=True)
class ReadyEndpoint:
    address: str  # the pod's IP
    pod: Optional[str]  # the pod's name, from the endpoint's targetRef (None when it names no pod)


@dataclass(frozen=True)
class SliceState:
    """What the gateway needs of one EndpointSlice: whose it is and which endpoints are ready."""

    deployment_id: Optional[str]  # its `truss.dev/deployment-id` label (None: not a truss deployment's)
    ready: tuple[ReadyEndpoint, ...]  # sorted by address

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(e.address for e in self.ready)


SliceStates = dict[str, SliceState]  # EndpointSlice name -> its state


@dataclass(frozen=True)
class PodState:
    """What the runtime needs of a pod: enough to say ready, starting, or why it failed."""

    name: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ready: bool  # the pod's Ready condition (its readiness probe passed)
    ip: Optional[str]
    restarts: int  # summed over its containers
    termination_reason: Optional[str]  # e.g. OOMKilled, Error: the last time a container ended
    waiting_reason: Optional[str]  # e.g. ImagePullBackOff, CrashLoopBackOff
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)  # the runtime's claim is one
    deleting: bool = False  # has a deletionTimestamp: terminating, never to be ready again
    images: tuple[str, ...] = ()  # its containers' images, as the pod spec names them


@dataclass(frozen=True)
class DeploymentScale:
    wanted: int  # spec.replicas
    current: int  # status.replicas: pods that exist now


class KubernetesApi:
    """One namespace of one cluster. Build it with `from_kubeconfig` or `in_cluster`."""

    def __init__(self, config: SingleConfig, namespace: str, timeout: float = 10.0) -> None:
        self.config = config
        self.namespace = namespace
        self.server = config.cluster.server
        self._timeout = httpx2.Timeout(timeout)
        # trust_env=False: settings are passed, not looked up (no proxy or CA variables read here).
        self._client = Client(config, namespace=namespace, timeout=self._timeout, field_manager=FIELD_MANAGER, trust_env=False)

    @classmethod
    def from_kubeconfig(cls, path: Path, namespace: str, context: Optional[str] = None) -> "KubernetesApi":
        """Connect as the kubeconfig file's context (its current one unless named)."""
        if not path.is_file():
            raise TrussError(f"No kubeconfig at {path}.", hint="Pass the file kubectl uses (usually ~/.kube/config).", exit_code=2)
        try:
            config = KubeConfig.from_file(path).get(context)
        except (ConfigError, KeyError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())  # a YAML error spans lines
            raise TrussError(f"Cannot use the kubeconfig {path}: {reason}", hint=f"Check it with `kubectl --kubeconfig {path} config view`.", exit_code=2) from exc
        if config is None:
            raise TrussError(f"The kubeconfig {path} has no current context.", hint="Name one (`kubectl config get-contexts` lists them).", exit_code=2)
        return cls(config, namespace)

    @classmethod
    def in_cluster(cls, namespace: Optional[str] = None, service_account_dir: Path = Path(SERVICE_ACCOUNT)) -> "KubernetesApi":
        """Connect as the pod's service account (the control plane running in the cluster)."""
        try:
            kubeconfig = KubeConfig.from_service_account(service_account_dir)
        except (ConfigError, KeyError, OSError) as exc:
            raise TrussError(
                f"Not inside a Kubernetes pod: no service account at {service_account_dir} ({exc}).",
                hint="Outside a cluster, pass a kubeconfig file instead.",
                exit_code=2,
            ) from exc
        config = kubeconfig.get()
        assert config is not None
        return cls(config, namespace or config.namespace)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "KubernetesApi":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- objects ----

    def apply(self, obj: Mapping[str, Any]) -> dict:
        """Create or update `obj` by server-side apply; returns the object as stored."""
        resource = _resource_of(obj)
        name = obj.get("metadata", {}).get("name")
        if not name:
            raise TrussError(f"A {obj.get('kind')} to apply has no metadata.name.")
        try:
            with self._errors("patch", resource, name, also="create"):
                stored = self._client.patch(resource, name, dict(obj), namespace=self.namespace, patch_type=PatchType.APPLY,
                                            field_manager=FIELD_MANAGER, force=True)
        except _Missing:  # apply creates what is missing, so a 404 means the API itself is not there
            raise TrussError(f"The Kubernetes API at {self.server} does not serve {_resource_name(resource)} "
                             f"({obj.get('apiVersion')}).", hint="Check the cluster's version (`kubectl version`).") from None
        return stored.to_dict()

    def get(self, kind: str, name: str) -> Optional[dict]:
        resource = _kind(kind)
        try:
            with self._errors("get", resource, name):
                return self._client.get(resource, name, namespace=self.namespace).to_dict()
        except _Missing:
            return None

    def delete(self, kind: str, name: str) -> bool:
        """Delete if present (True); an object already gone is fine (False)."""
        resource = _kind(kind)
        try:
            with self._errors("delete", resource, name):
                self._client.delete(resource, name, namespace=self.namespace)
        except _Missing:
            return False
        return True

    def scale(self, deployment: str, replicas: int) -> DeploymentScale:
        """Set a Deployment's replicas through its `scale` subresource (0 parks it)."""
        if replicas < 0:
            raise TrussError(f"Cannot scale {deployment} to {replicas} replicas: the count must be 0 or more.")
        try:
            with self._errors("patch", Deployment.Scale, deployment):
                scale = self._client.patch(Deployment.Scale, deployment, {"spec": {"replicas": replicas}},
                                           namespace=self.namespace, patch_type=PatchType.MERGE)
        except _Missing:
            raise self._no_deployment(deployment) from None
        return _deployment_scale(scale)

    def read_scale(self, deployment: str) -> DeploymentScale:
        try:
            with self._errors("get", Deployment.Scale, deployment):
                scale = self._client.get(Deployment.Scale, deployment, namespace=self.namespace)
        except _Missing:
            raise self._no_deployment(deployment) from None
        return _deployment_scale(scale)

    def replica_failure(self, deployment: str) -> Optional[str]:
        """Why the Deployment's pods cannot be created, as the API server refused the last
        try (Pod Security admission, a ResourceQuota, a missing ServiceAccount): the message
        of its `ReplicaFailure` condition, which the Deployment controller copies from its
        ReplicaSet's (`FailedCreate`) and removes once a create succeeds. None: no refusal
        (or no such Deployment)."""
        found = self.get("Deployment", deployment)
        for condition in ((found or {}).get("status") or {}).get("conditions") or []:
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                return condition.get("message") or condition.get("reason") or "ReplicaFailure"
        return None

    # ---- pods ----

    def pods(self, labels: Mapping[str, str]) -> list[PodState]:
        """The pods whose labels include every pair of `labels`, by name."""
        with self._errors("list", Pod):
            found = list(self._client.list(Pod, namespace=self.namespace, labels=dict(labels)))
        return sorted((_pod_state(p.to_dict()) for p in found), key=lambda p: p.name)

    def read_log(self, pod: str, since: Optional[datetime] = None, follow: bool = False) -> Iterator[LogLine]:
        """A pod's log lines with their times; with `follow`, new lines until the container ends."""
        seconds = None
        if since is not None:
            # The API takes whole seconds back from now; ask for a little more, then cut exactly.
            seconds = max(1, math.ceil((datetime.now(timezone.utc) - since).total_seconds()) + 1)
        try:
            with self._errors("get", Pod.Log, pod):
                lines = self._client.log(pod, namespace=self.namespace, since=seconds, follow=follow, timestamps=True, newlines=False)
        except _Missing:
            raise TrussError(f"No pod {pod} in namespace {self.namespace}.") from None
        return _log_lines(lines, since)

    # ---- endpoints ----

    async def watch_endpoint_slices(self, labels: Mapping[str, str]) -> AsyncIterator[SliceStates]:
        """Each EndpointSlice's deployment and ready endpoints: the current set first, then each
        time it changes. A terminating endpoint is never ready (the API sets `ready: false`
        for it), so a pod being deleted leaves the set at the first event that says so.

        A watch the server or network drops resumes from the last resourceVersion seen, so no
        change in between is missed; when that version is too old (410 Gone) it lists afresh.
        """
        client = AsyncClient(self.config, namespace=self.namespace, timeout=self._timeout, field_manager=FIELD_MANAGER, trust_env=False)
        last: Optional[SliceStates] = None
        pause = WATCH_RETRY_SECONDS[0]
        try:
            while True:
                try:
                    with self._errors("list", EndpointSlice, retry_transport=True):
                        listing = client.list(EndpointSlice, namespace=self.namespace, labels=dict(labels))
                        slices = {s.metadata.name: _slice_state(s.to_dict()) async for s in listing}
                except httpx2.TransportError:
                    await asyncio.sleep(pause)  # unreachable for now: list again
                    pause = min(pause * 2, WATCH_RETRY_SECONDS[1])
                    continue
                version = listing.resourceVersion
                pause = WATCH_RETRY_SECONDS[0]
                while version is not None:
                    if slices != last:
                        last = dict(slices)
                        yield dict(slices)
                    try:
                        with self._errors("watch", EndpointSlice, retry_transport=True):
                            async for event, obj in client.watch(EndpointSlice, namespace=self.namespace,
                                                                 labels=dict(labels), resource_version=version):
                                version = obj.metadata.resourceVersion
                                if event == "DELETED":
                                    slices.pop(obj.metadata.name, None)
                                else:
                                    slices[obj.metadata.name] = _slice_state(obj.to_dict())
                                pause = WATCH_RETRY_SECONDS[0]
                                if slices != last:
                                    last = dict(slices)
                                    yield dict(slices)
                    except _Expired:
                        version = None  # too far behind: list again
                    except httpx2.TransportError:
                        await asyncio.sleep(pause)  # dropped: resume from `version`
                        pause = min(pause * 2, WATCH_RETRY_SECONDS[1])
        finally:
            await client.close()

    # ---- errors ----

    def _no_deployment(self, name: str) -> TrussError:
        return TrussError(f"No Deployment {name} in namespace {self.namespace}.")

    def _errors(self, verb: str, resource: type, name: Optional[str] = None, also: Optional[str] = None,
                retry_transport: bool = False) -> "_Translate":
        return _Translate(self, verb, resource, name, also, retry_transport)


class _Missing(Exception):
    """A 404 for the object itself (the caller decides whether that is fine)."""


class _Expired(Exception):
    """A watch's resourceVersion is older than the server keeps (410 Gone)."""


class _Translate:
    """Turns lightkube's and httpx2's errors inside a `with` into ones the user can act on."""

    def __init__(self, api: KubernetesApi, verb: str, resource: type, name: Optional[str], also: Optional[str],
                 retry_transport: bool) -> None:
        self.api, self.verb, self.resource, self.name, self.also = api, verb, resource, name, also
        self.retry_transport = retry_transport  # the caller retries a connection error itself

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, _: Any) -> bool:
        if exc is None:
            return False
        ns = self.api.namespace
        if isinstance(exc, httpx2.HTTPStatusError):
            code, message, details = _status_of(exc)
            what = _resource_name(self.resource)
            if code == 404 and details.get("kind") == "namespaces":
                raise TrussError(f"The namespace {ns} does not exist on {self.api.server}.",
                                 hint=f"Create it: kubectl create namespace {ns}", exit_code=2) from exc
            if code == 404 and self.name is not None:
                raise _Missing() from exc
            if code == 410:
                raise _Expired() from exc
            if code == 403:
                verbs = f"{self.verb} (and {self.also})" if self.also else self.verb
                raise TrussError(
                    f"Kubernetes refused to {self.verb} {what} in namespace {ns}: the control plane's Role lacks the verb {verbs} on {what}.",
                    hint=f"Apply the Role that `truss server manifests` prints, or add it to yours. The API server said: {message}",
                ) from exc
            if code == 401:
                raise TrussError(f"Kubernetes at {self.api.server} rejected the credentials: {message}",
                                 hint="Check the kubeconfig's user (its token or certificate may have expired).") from exc
            raise TrussError(f"Kubernetes answered {code} to {self.verb} {what}"
                             f"{' ' + self.name if self.name else ''} in namespace {ns}: {message}") from exc
        if isinstance(exc, httpx2.TransportError) and not self.retry_transport:
            raise TrussError(f"Cannot reach the Kubernetes API at {self.api.server}: {exc or type(exc).__name__}",
                             hint="Check the cluster is up and the kubeconfig's server address (`kubectl cluster-info`).") from exc
        return False


def _deployment_scale(scale: Any) -> DeploymentScale:
    spec, status = scale.spec, scale.status  # either may be absent or empty in a Scale
    return DeploymentScale(wanted=(spec.replicas if spec else 0) or 0, current=(status.replicas if status else 0) or 0)


def _status_of(exc: httpx2.HTTPStatusError) -> tuple[int, str, dict]:
    """(code, message, details) of a failed call, from its Status object when there is one."""
    if isinstance(exc, ApiError) and exc.status is not None:
        status = exc.status.to_dict()
        return int(status.get("code") or exc.response.status_code), status.get("message", ""), status.get("details") or {}
    return exc.response.status_code, exc.response.reason_phrase, {}  # a streamed watch's body is not read


def _resource_name(resource: type) -> str:
    """`deployments.apps`, `pods/log`, `deployments.apps/scale`: as a Role's rules name them."""
    info = lightkube_resource.api_info(resource)
    base = info.parent or info.resource
    name = f"{info.plural}.{base.group}" if base.group else info.plural
    return f"{name}/{info.action}" if info.action else name


def _kind(kind: str) -> Type[lightkube_resource.NamespacedResource]:
    try:
        return KINDS[kind]
    except KeyError:
        raise TrussError(f"The Kubernetes runtime does not handle the kind {kind!r}; it handles {', '.join(KINDS)}.") from None


def _resource_of(obj: Mapping[str, Any]) -> Type[lightkube_resource.NamespacedResource]:
    resource = _kind(str(obj.get("kind")))
    expected = lightkube_resource.api_info(resource).resource.api_version
    if obj.get("apiVersion") != expected:
        raise TrussError(f"A {obj.get('kind')} has apiVersion {obj.get('apiVersion')!r}; the runtime writes {expected}.")
    return resource


def _slice_state(endpoint_slice: Mapping[str, Any]) -> SliceState:
    """The slice's deployment (its label) and its ready endpoints: a missing `ready` means
    ready (the API's rule); `serving` is not enough, since a terminating pod may still serve
    (its readiness probe passes while it drains) but must take no new request."""
    found: dict[str, Optional[str]] = {}
    for endpoint in endpoint_slice.get("endpoints") or []:
        if (endpoint.get("conditions") or {}).get("ready") is not False:
            target = endpoint.get("targetRef") or {}
            pod = target.get("name") if target.get("kind", "Pod") == "Pod" else None
            for address in endpoint.get("addresses") or []:
                found[address] = pod
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return SliceState(labels.get(DEPLOYMENT_ID_LABEL), tuple(ReadyEndpoint(a, found[a]) for a in sorted(found)))


def _pod_state(pod: Mapping[str, Any]) -> PodState:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    termination = waiting = None
    for container in containers:
        state, last = container.get("state") or {}, container.get("lastState") or {}
        ended = state.get("terminated") or last.get("terminated")
        termination = termination or (ended or {}).get("reason")
        waiting = waiting or (state.get("waiting") or {}).get("reason")
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        ip=status.get("podIP"),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        termination_reason=termination,
        waiting_reason=waiting,
        labels=dict(pod["metadata"].get("labels") or {}),
        annotations=dict(pod["metadata"].get("annotations") or {}),
        deleting=bool(pod["metadata"].get("deletionTimestamp")),
        images=tuple(c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []),
    )


def _log_lines(lines: Iterator[str], since: Optional[datetime]) -> Iterator[LogLine]:
    """Lines asked for with `timestamps=true` ("2024-05-01T10:00:00.123456789Z text") as LogLines."""
    for line in lines:
        stamp, _, text = line.partition(" ")
        at = _parse_time(stamp)
        if at is None:  # not a timestamped line (should not happen): keep it, dated now
            at, text = datetime.now(timezone.utc), line
        if since is None or at >= since:
            yield LogLine(at=at, text=text)


def _parse_time(stamp: str) -> Optional[datetime]:
    # Nanoseconds do not fit a datetime: keep microseconds.
    head, dot, fraction = stamp.rstrip("Z").partition(".")
    try:
        at = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
    except ValueError:
        return None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
