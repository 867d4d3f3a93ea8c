"""The Kubernetes runtime: a replica is a pod of its deployment's Kubernetes Deployment.

It speaks the same per-replica protocol as the other runtimes (runtimes/base.py), so the
control plane does not know it is talking to a cluster:

- `prepare` is the Docker runtime's image build (its code, not a copy), then a push to the
  configured registry; the artifact's reference is the image's digest reference.
- `start` ensures the deployment's objects (objects.py, by forced server-side apply: a
  Deployment WITHOUT `spec.replicas`, a headless Service, a PodDisruptionBudget, a Secret of
  the model's secret values), then raises the Deployment's count by one through its `scale`
  subresource, the only writer of that count. It returns at once: the handle names a claim
  (the replica id), not a pod.
- `status` claims a pod lazily: the first time it finds none annotated with the replica id,
  it annotates an unclaimed pod of the deployment (`truss.dev/replica-id`). The pod's IP comes
  back as `ObservedStatus.url`, which the control plane records in the handle. A claimed pod
  deleted by anyone but `stop` (a rolling update replacing it) hands the claim to a Ready
  unclaimed pod of the same image when there is one (`_take_over`): the replica serves on.
- `stop` marks the claimed pod with the lowest `controller.kubernetes.io/pod-deletion-cost`,
  lowers the count by one, and deletes that pod: a ReplicaSet ranks not-ready pods before
  deletion cost, so it might take another (a starting) pod instead; deleting ours as well
  means the count stays right and no pod is left claimed by a stopped replica (the other
  pod's replacement is claimed afresh).

One control plane per namespace (its Deployment is `Recreate`), so a lock in this process is
enough to keep read-scale-then-write and claims from racing each other.

Development deployments (ReplicaSpec.development) run the development replica in their pods;
`status` delivers each pod its start tree through the control API before it reports READY,
and reports the control API's address (ObservedStatus.control_url): kubernetes/development.py.
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, AsyncGenerator, Iterable, Iterator, Optional

import httpx

from truss_cli.config import ConfigError, load_config
from truss_cli.controlplane.runtimes.base import (
    CONTROL_TOKEN_FILE,
    GONE,
    Artifact,
    BuildError,
    BuildRequest,
    Handle,
    LogLine,
    ObservedStatus,
    ReadyReplicas,
    ReplicaSpec,
    one_line_cause,
)
from truss_cli.controlplane.runtimes.kubernetes import development, objects
from truss_cli.controlplane.runtimes.kubernetes.api import KubernetesApi, PodState, SliceState
from truss_cli.controlplane.runtimes.kubernetes.objects import ModelDeployment, deployment_objects
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.errors import TrussError
from truss_cli.image.registry import Registry, push
from truss_cli.server import protocol
from truss_cli.server.status import FAILED, LOADING, READY, STARTING, ReplicaStatus

KIND = "kubernetes"
CLAIM_ANNOTATION = "truss.dev/replica-id"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
LOWEST_DELETION_COST = str(-(2**31))  # int32's lowest: this pod goes first
# A claimed pod's: among Ready pods a ReplicaSet scaling down (a rollout's old one, a scale
# spread over ReplicaSets) removes the lowest cost first, so an unclaimed pod goes before a
# replica's (unset counts as 0).
CLAIMED_DELETION_COST = "1"
SECRET_PREFIX = "truss-secrets-"
# Waiting reasons after which a container does not come up by itself: the replica FAILED.
# Not ErrImagePull: the kubelet's first failed try (a registry hiccup), retried until it
# becomes ImagePullBackOff.
_STUCK = ("CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError", "RunContainerError")
# How long a pod its kubelet calls Ready may refuse the control plane's connections before its
# replica is FAILED. Its kubelet's probe reached the server within a probe period (10 s), so
# the control plane should too at once; this covers a blip, not a network that is not routed.
UNREACHABLE_SECONDS = 10.0


class KubernetesRuntime:
    kind = KIND
    # Development pods run the control layer on a tree the control plane delivers
    # (kubernetes/development.py). No `provision`: the pods run as a non-root user and the
    # runtime has no exec, so a change of requirements or system packages is a rebuild.
    development_replicas = True

    def __init__(self, api: KubernetesApi, registry: Registry, images: Any, image_pull_secrets: tuple[str, ...] = (),
                 data_dir: Optional[Path] = None, unreachable_after: float = UNREACHABLE_SECONDS):
        """`images`: the Docker runtime whose build `prepare` reuses (anything with its
        `prepare`, `remove_artifact` and engine `client`). `data_dir`: where the control plane
        keeps its copy of development deployments' control tokens (default: `images`'s).
        `unreachable_after`: seconds a Ready pod may refuse the control plane before its
        replica is FAILED (UNREACHABLE_SECONDS)."""
        self.api = api
        self.registry = registry
        self.images = images
        self.image_pull_secrets = image_pull_secrets
        data_dir = data_dir or getattr(getattr(images, "settings", None), "data_dir", None)
        self._root = Path(data_dir) / "kubernetes" if data_dir else None
        # Start trees for development pods, written as envelopes beside the tokens (a tree's data/ may be large).
        self._deliveries = development.TreeDeliveries(self._root / "tmp" if self._root else Path(tempfile.gettempdir()))
        self._lock = threading.Lock()
        # Replicas stopped by this process. A stopped replica's pod is deleted, so a second
        # `stop` finds no claim; the marked pod says "stopped" only while it exists.
        self._stopped: set[str] = set()
        self.unreachable_after = unreachable_after
        # Replica id -> (its pod, when that Ready pod was first found unreachable from here).
        self._unreachable: dict[str, tuple[str, float]] = {}

    # -- builds ---------------------------------------------------------------------------

    def prepare(self, request: BuildRequest) -> Artifact:
        if not request.model_id:
            raise BuildError("the Kubernetes runtime needs the deployment's model id (it labels the objects with it)")
        built = self.images.prepare(request)  # the build log is written there
        with LogFile(request.build_log) as log:
            log(f"pushing {built.reference} to {self.registry}")
            try:
                reference = push(self.images.client, built.data["tag"], self.registry)
            except TrussError as exc:
                log(f"push failed: {exc.message}")
                if exc.hint:
                    log(f"hint: {exc.hint}")
                raise BuildError(one_line_cause(exc.message)) from None
            log(f"pushed {reference}")
        pushed_tag = f"{reference.partition('@')[0]}:{built.data['tag'].rpartition(':')[2]}"
        return Artifact(
            kind=KIND,
            deployment_id=request.deployment_id,
            reference=reference,
            data={
                "image": reference,
                "local": built.to_dict(),  # the engine's image, untagged with the artifact
                "pushed_tag": pushed_tag,  # the registry's name for it on this machine (push tags it)
                # The unpacked archive stays in place as long as the artifact is used
                # (BuildRequest), so `start` reads config.yaml from it.
                "model_dir": str(request.model_dir),
                "model_id": request.model_id,
                "model_name": built.data.get("model_name") or request.config.model_name or "model",
                "deployment_name": request.deployment_name or request.deployment_id,
            },
        )

    def remove_artifact(self, artifact: Artifact) -> None:
        """The deployment is deleted and nothing uses its image: its objects go (its replicas
        were stopped before), and the local image's tag. The registry keeps what was pushed
        (a registry's garbage collection is its operator's)."""
        name = objects.object_name(artifact.deployment_id)
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            self.api.delete(kind, name)
        self.api.delete("Secret", SECRET_PREFIX + artifact.deployment_id)
        local = artifact.data.get("local")
        if self._root is not None:
            development.ControlTokens(self.api, self._root).remove(artifact.deployment_id)
        if local:
            self.images.remove_artifact(Artifact.from_dict(local))
            if artifact.data.get("pushed_tag"):
                self.images.remove_artifact(Artifact.from_dict({**local, "data": {**local["data"], "tag": artifact.data["pushed_tag"]}}))

    # -- replicas -------------------------------------------------------------------------

    def start(self, spec: ReplicaSpec) -> Handle:
        data = spec.artifact.data
        try:
            config = load_config(Path(data["model_dir"])).config
        except (ConfigError, OSError) as exc:
            raise TrussError(f"cannot read the deployment's config.yaml at {data['model_dir']}: {exc}") from None
        secret_name = SECRET_PREFIX + spec.deployment_id if config.secrets else None
        # A development replica unless the image cannot run one (a custom server has no control
        # layer; external_data's downloads are in the image's /app/data, not in the tree), as on
        # Docker; then a published one's pod, and every patch is a rebuild. Decided from the
        # image's config, not the start tree's, so every start of the deployment applies the
        # same template (a start tree whose config.yaml does not load fails its delivery instead).
        developing = (spec.development and bool(spec.tree_dir) and self._root is not None
                      and config.docker_server is None and not config.external_data)
        target = ModelDeployment(
            model_id=data["model_id"], model_name=data["model_name"], deployment_id=spec.deployment_id,
            deployment_name=data["deployment_name"], image=data["image"], namespace=self.api.namespace,
            secret_name=secret_name, image_pull_secrets=self.image_pull_secrets, development=developing,
            control_token_secret=development.token_secret_name(spec.deployment_id) if developing else None,
        )
        name = objects.object_name(spec.deployment_id)
        handle_data: dict[str, Any] = {"deployment": name, "image": data["image"]}
        with self._lock:
            if developing:
                assert self._root is not None
                token_file = development.ControlTokens(self.api, self._root).ensure(data["model_id"], spec.deployment_id)
                handle_data.update({development.DEVELOPMENT: True, development.START_TREE_DIR: spec.tree_dir,
                                    development.START_TREE_HASH: spec.tree_hash, CONTROL_TOKEN_FILE: str(token_file)})
            if secret_name:
                self.api.apply(_secret(secret_name, target, spec.secrets))
            # The API server gives a new Deployment one replica (it names none): that one is
            # this replica's. An existing one counts up by one.
            existed = self.api.get("Deployment", name) is not None
            for obj in deployment_objects(target, config):
                self.api.apply(obj)
            if existed:
                self.api.scale(name, self.api.read_scale(name).wanted + 1)
        # The image it claims a pod of: while a Deployment rolls to a new image (a development
        # rebuild), pods of the old one must not serve the new replica.
        return Handle(KIND, spec.deployment_id, spec.replica_id, None, handle_data)

    def status(self, handle: Handle) -> ObservedStatus:
        pod = self._claimed_pod(handle, claim=True)
        if (pod is None and handle.url) or (pod is not None and pod.deleting):
            pod = self._take_over(handle, pod) or pod
        if pod is None:
            # Once it had an address, the claimed pod existed: it is gone. Before, the scale-up
            # has not made a pod for it yet, or the API server refuses to make one (admission,
            # a quota): that does not pass by itself, so say why instead of starting forever.
            if handle.url:
                return ObservedStatus(GONE)
            name = objects.object_name(handle.deployment_id)
            refused = self.api.replica_failure(name)
            if refused:
                return ObservedStatus(FAILED, summary=f"pods of {name} cannot be created: {one_line_cause(refused)}")
            return ObservedStatus(STARTING)
        if pod.phase in ("Failed", "Succeeded") or pod.deleting:
            return ObservedStatus(GONE, summary=_pod_cause(pod, "ended"))
        if pod.waiting_reason in _STUCK:
            return ObservedStatus(FAILED, summary=_pod_cause(pod, "cannot start"))
        if not pod.ip:
            return ObservedStatus(STARTING)
        url = pod_url(pod.ip)
        server, unreachable = _server_status(url, pod.name)
        if pod.ready and unreachable:
            return self._unreachable_status(handle, pod, url, unreachable)
        self._unreachable.pop(handle.replica_id, None)
        if handle.data.get(development.DEVELOPMENT):
            return self._development_status(handle, pod, url, server)
        if server is not None and server.phase == FAILED:  # a failed load() stays up saying why
            return ObservedStatus(FAILED, server.summary, server.traceback, url=url)
        return ObservedStatus(READY if pod.ready else LOADING, url=url)

    def _take_over(self, handle: Handle, going: Optional[PodState]) -> Optional[PodState]:
        """The claimed pod is going (or gone), deleted by someone else than `stop`: a rolling
        update's ReplicaSet scaling down (a new template: an upgrade's re-apply, a rebuild's
        image), `kubectl delete pod`, an eviction. Its ReplicaSet has made (or makes) its
        replacement, so the Deployment's count is right as it is; the claim moves to a Ready
        unclaimed pod of the replica's image when there is one (a rolling update made it ready
        before deleting this one): the replica keeps serving there, restarted by nobody. ->
        that pod, or None (the replica is GONE, and restarted as before)."""
        if handle.replica_id in self._stopped:
            return None
        if going is not None and going.annotations.get(DELETION_COST_ANNOTATION) == LOWEST_DELETION_COST:
            return None  # `stop` marked it: this replica is going too
        with self._lock:
            pods = self._pods(handle.deployment_id)
            claimed = _claimed(pods, handle.replica_id)
            if claimed is not None and not claimed.deleting:
                return claimed  # moved already (another status call)
            free = _unclaimed(pods, handle.data.get("image"))
            if free is None or not free.ready or not self._annotate(
                    free.name, handle.replica_id, {DELETION_COST_ANNOTATION: CLAIMED_DELETION_COST}):
                return None
            return free

    def _unreachable_status(self, handle: Handle, pod: PodState, url: str, why: str) -> ObservedStatus:
        """A pod its kubelet calls Ready (its probe reaches the server) that the control plane
        cannot connect to: the gateway could not either, so it is not READY for us. LOADING for
        `unreachable_after` seconds, then FAILED saying what to do: typically a control plane
        outside the cluster whose machine has no route to the pod network."""
        now = time.monotonic()
        seen = self._unreachable.get(handle.replica_id)
        if seen is None or seen[0] != pod.name:
            seen = self._unreachable[handle.replica_id] = (pod.name, now)
        if now - seen[1] < self.unreachable_after:
            return ObservedStatus(LOADING, url=url)
        return ObservedStatus(FAILED, summary=f"the control plane cannot reach pod {pod.name} at {url} ({why}): route the "
                                              "pod network to this machine, or run the control plane in the cluster "
                                              "(docs/kubernetes.md)", url=url)

    def _development_status(self, handle: Handle, pod: PodState, url: str,
                            server: Optional[ReplicaStatus]) -> ObservedStatus:
        """A development pod: LOADING until it serves its start tree (delivered here, in the
        background, when it still has the empty tree it boots with); then as any pod, with the
        tree it serves and its control API's address."""
        if server is None or server.control_port is None:
            return ObservedStatus(LOADING, url=url)  # not answering yet
        control_url = pod_url(pod.ip or "", server.control_port)
        if server.tree_hash == development.EMPTY_TREE_HASH:
            failure = self._deliveries.ensure(handle, control_url)
            if failure is not None:
                return ObservedStatus(FAILED, failure.summary, failure.traceback, url=url, control_url=control_url,
                                      tree_hash=handle.data.get(development.START_TREE_HASH))
            return ObservedStatus(LOADING, url=url, control_url=control_url)
        if server.phase == FAILED:
            return ObservedStatus(FAILED, server.summary, server.traceback, tree_hash=server.tree_hash, url=url,
                                  control_url=control_url)
        return ObservedStatus(READY if pod.ready else LOADING, tree_hash=server.tree_hash, url=url, control_url=control_url)

    def stop(self, handle: Handle, grace: float = protocol.STOP_GRACE_SECONDS) -> None:
        """Idempotent: a pod already marked is not counted down again. `grace` is not used:
        the pod's own terminationGracePeriodSeconds (objects.py) is the kubelet's wait
        between SIGTERM and SIGKILL."""
        name = objects.object_name(handle.deployment_id)
        self._deliveries.forget(handle.replica_id)
        self._unreachable.pop(handle.replica_id, None)
        with self._lock:
            if handle.replica_id in self._stopped:
                return  # its pod is gone: claiming another would stop a second replica
            self._stopped.add(handle.replica_id)
            pods = self._pods(handle.deployment_id)
            pod = _claimed(pods, handle.replica_id)
            if pod is None:
                # Never claimed (or its pod went): claim an unclaimed one so the one going is
                # not another replica's; with none, count down only what no claim holds.
                pod = _unclaimed(pods, handle.data.get("image"))
                if pod is None:
                    live = sum(1 for p in pods if CLAIM_ANNOTATION in p.annotations and not _stopping(p))
                    wanted = self._wanted(name)
                    if wanted is not None and wanted > live:
                        self.api.scale(name, wanted - 1)
                    return
            if _stopping(pod):
                if pod.deleting and pod.annotations.get(DELETION_COST_ANNOTATION) != LOWEST_DELETION_COST:
                    # Deleted by someone else (`kubectl delete pod`, an eviction) and still
                    # terminating: its ReplicaSet replaces it, and the replica the control plane
                    # starts instead counts up, so count this one down or there is one too many.
                    wanted = self._wanted(name)
                    if wanted:
                        self.api.scale(name, wanted - 1)
                return
            if not self._annotate(pod.name, handle.replica_id, {DELETION_COST_ANNOTATION: LOWEST_DELETION_COST}):
                return
            wanted = self._wanted(name)
            if wanted:
                self.api.scale(name, wanted - 1)
            self.api.delete("Pod", pod.name)

    def list(self) -> list[Handle]:
        found = []
        for pod in self.api.pods({objects.MANAGED_BY: objects.MANAGER}):
            replica_id = pod.annotations.get(CLAIM_ANNOTATION)
            deployment_id = pod.labels.get(objects.DEPLOYMENT_ID_LABEL)
            if not replica_id or not deployment_id or _stopping(pod):
                continue
            found.append(Handle(KIND, deployment_id, replica_id, pod_url(pod.ip) if pod.ip else None,
                                {"deployment": objects.object_name(deployment_id)}))
        return found

    def logs(self, handle: Handle, since=None, follow: bool = False) -> Iterator[LogLine]:
        """Its pod's log (the container's, as the kubelet keeps it: gone with the pod)."""
        pod = self._claimed_pod(handle, claim=False)
        if pod is None:
            return iter(())
        try:
            return self.api.read_log(pod.name, since=since, follow=follow)
        except TrussError:  # deleted meanwhile
            return iter(())

    # -- the ready feed (base.ReadyFeed) ----------------------------------------------------

    async def watch_ready(self) -> AsyncGenerator[ReadyReplicas, None]:
        """Every truss deployment's ready pods, from the EndpointSlices of their headless
        Services: {deployment id: {pod URL: pod name}}, whole each time a slice changes. A
        dropped watch resumes inside `watch_endpoint_slices`; a refused one (the Role lacks
        endpointslices) raises its TrussError, and the control plane falls back."""
        async with contextlib.aclosing(self.api.watch_endpoint_slices({objects.MANAGED_BY: objects.MANAGER})) as watch:
            async for slices in watch:  # closing this closes the watch's connection too
                yield ready_replicas(slices.values())

    # -- helpers --------------------------------------------------------------------------

    def _pods(self, deployment_id: str) -> list[PodState]:
        return self.api.pods(objects.selector(deployment_id))

    def _wanted(self, name: str) -> Optional[int]:
        try:
            return self.api.read_scale(name).wanted
        except TrussError:  # the Deployment is gone (deleted by someone): nothing to count down
            return None

    def _claimed_pod(self, handle: Handle, claim: bool) -> Optional[PodState]:
        pods = self._pods(handle.deployment_id)
        pod = _claimed(pods, handle.replica_id)
        if pod is not None or not claim or handle.url:
            return pod
        with self._lock:
            pods = self._pods(handle.deployment_id)  # again, under the lock: another may have claimed
            pod = _claimed(pods, handle.replica_id) or _unclaimed(pods, handle.data.get("image"))
            if pod is not None and CLAIM_ANNOTATION not in pod.annotations:
                if not self._annotate(pod.name, handle.replica_id, {DELETION_COST_ANNOTATION: CLAIMED_DELETION_COST}):
                    return None
            return pod

    def _annotate(self, pod: str, replica_id: str, more: dict[str, str]) -> bool:
        """Server-side apply of the runtime's annotations on an existing pod (all of them each
        time: an apply lets go of fields it leaves out). False when the pod went meanwhile."""
        if self.api.get("Pod", pod) is None:
            return False  # an apply would try to create it
        annotations = {CLAIM_ANNOTATION: replica_id, **more}
        try:
            self.api.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "annotations": annotations}})
        except TrussError:  # refused: deleted between the two calls (a create of it is invalid)
            return False
        return True


def pod_url(ip: str, port: int = protocol.DEFAULT_SERVER_PORT) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def ready_replicas(slices: Iterable[SliceState]) -> dict[str, dict[str, str]]:
    """{deployment id: {pod URL: pod name (its address when the endpoint names no pod)}} of
    the ready endpoints of `slices`; a deployment may have several slices."""
    ready: dict[str, dict[str, str]] = {}
    for state in slices:
        if state.deployment_id is None:
            continue
        mine = ready.setdefault(state.deployment_id, {})
        for endpoint in state.ready:
            mine[pod_url(endpoint.address)] = endpoint.pod or endpoint.address
    return ready


def _claimed(pods: list[PodState], replica_id: str) -> Optional[PodState]:
    """The pod claimed by `replica_id`: after a claim moved (`_take_over`), the one not going."""
    mine = [p for p in pods if p.annotations.get(CLAIM_ANNOTATION) == replica_id]
    return min(mine, key=lambda p: p.deleting, default=None)


def _unclaimed(pods: list[PodState], image: Optional[str]) -> Optional[PodState]:
    """The unclaimed pod (of `image`, when given) most nearly serving: ready first, then with
    an address, then by name."""
    free = [p for p in pods if CLAIM_ANNOTATION not in p.annotations and not p.deleting
            and p.phase not in ("Failed", "Succeeded") and (not image or image in p.images)]
    free.sort(key=lambda p: (not p.ready, not p.ip, p.name))
    return free[0] if free else None


def _stopping(pod: PodState) -> bool:
    return pod.deleting or pod.annotations.get(DELETION_COST_ANNOTATION) == LOWEST_DELETION_COST


def _pod_cause(pod: PodState, what: str) -> str:
    """One line: `pod NAME cannot start: ImagePullBackOff (last exit: OOMKilled)`."""
    reasons = [r for r in (pod.waiting_reason, pod.termination_reason and f"last exit: {pod.termination_reason}") if r]
    return f"pod {pod.name} {what}: " + (", ".join(reasons) if reasons else pod.phase)


def _server_status(url: str, pod_name: str) -> tuple[Optional[ReplicaStatus], Optional[str]]:
    """(the model server's own status, when the server at `url` is this pod's (its replica
    id is the pod's name, objects.py); why the pod cannot be reached from here, when nothing
    accepts the connection or another server answers). A server that accepts but is slow to
    answer (busy) is neither: its pod's conditions stand."""
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            answer = client.get(url + protocol.STATUS_PATH)
        if answer.headers.get(protocol.REPLICA_ID_HEADER) != pod_name:
            return None, "another server answers at that address"
        return ReplicaStatus.from_json(answer.text), None
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return None, _connect_failure(exc)
    except (httpx.HTTPError, ValueError, TypeError):
        return None, None


def _connect_failure(exc: Exception) -> str:
    """`connection refused`, `connect timed out`, `no route to host`: the errno's words."""
    cause = exc.__context__ or exc.__cause__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__ or cause.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    return " ".join(str(exc).split()).lower() or type(exc).__name__


def _secret(name: str, target: ModelDeployment, values: dict[str, str]) -> dict[str, Any]:
    """The deployment's Secret: its keys are the secret names (files under the mount)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": objects.labels(target.model_id, target.deployment_id)},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in sorted(values.items())},
    }
