"""The Kubernetes objects one deployment becomes: a Deployment, a headless Service and a
PodDisruptionBudget, as plain dicts ready for server-side apply or `kubectl apply`.

Pure functions of their inputs (no cluster, no clock, no randomness), so a re-apply after a
control-plane restart sends the same objects and the API server sees no change.

What each choice is for:
- Names are `truss-deployment-<deployment id>`: ids are 8 lowercase alphanumerics
  (`store/ids.py`), so the name is a valid DNS-1035 label (a Service name must start with a
  letter) and stable for the deployment's life. Model and deployment *names* are user text:
  they go in annotations, never in names or label values.
- Labels on every object and on the pod template tie it to its model and deployment; the
  selector uses only the deployment id (a Deployment's selector is immutable, and a model id
  never changes under a deployment anyway).
- The image is referenced by digest only: a tag can move, and two pods of one deployment must
  run the same bytes.
- Probes are the model server's own routes (`server/protocol.py`, `server/probes.py`): the
  startup probe waits on readiness (503 while `load()` runs) for as long as loading may take,
  so liveness never kills a loading model; liveness is `/` (200 while the server answers);
  readiness is the model's route, which the gateway's EndpointSlice watch follows.
  config.yaml's `runtime.health_checks` set their thresholds, as on Baseten.
- `maxSurge: 1, maxUnavailable: 0`: a restart or new image starts a pod before an old one
  goes, so capacity never drops.
- Secrets are a Kubernetes Secret (keys = the names under config.yaml's `secrets:`) mounted
  read-only at `/run/truss/secrets`, named by TRUSS_SECRETS_DIR, which the model server reads
  file by file (`server/secrets.py`); a custom server's replica copies them to `/secrets` as
  it does in a container. Never an environment variable with a value.
- The pod runs as the image's unprivileged user (10001), no privilege escalation, no
  capabilities, the runtime's default seccomp profile, no service-account token (a model
  needs no API access) and no service-link variables. A model server's root filesystem is
  read-only: the server writes nothing outside /tmp (and models' libraries cache under
  $HOME), both given as emptyDirs. A custom server's is writable: its replica writes the
  secrets to `/secrets`, and what the user's own server writes is unknown.
- A deleted pod keeps serving for PRE_STOP_SECONDS before it is told to stop (a `preStop`
  hook that sleeps): the kubelet SIGTERMs a container at the moment its endpoint turns
  terminating, and the gateway hears of that over the EndpointSlice watch a moment later, so a
  request sent in between would find a server already draining (closed connections, 502). The
  hook runs the replica's own Python (the venv's, or a `no_build` image's interpreter), which
  every image we deploy has since the replica runs on it, rather than `sleep`, which a slim
  custom image may lack; `lifecycle.preStop.sleep` would need no binary but is alpha (off) in
  Kubernetes 1.29, which we support. A hook that cannot run (a `no_build` image whose Python is
  elsewhere) is logged as FailedPreStopHook and the pod stops at once, as it would without one.
- `terminationGracePeriodSeconds` is the server's shutdown budget
  (`protocol.STOP_GRACE_SECONDS`, longer than its drain), as every other supervisor waits,
  plus PRE_STOP_SECONDS: the grace period counts from the deletion, hook included, so the
  server's drain budget after SIGTERM is the same as on the other runtimes.
- A development deployment's pods (`ModelDeployment.development`, docs/kubernetes.md
  "Development deployments") run the same image as the development replica
  (`python -m truss_cli.server.control`) on an empty, writable tree (an emptyDir) that the
  control plane fills through the control API on CONTROL_PORT once the pod answers
  (kubernetes/development.py); the control API's token is a file of a Secret of its own, so
  the pod spec names only the Secret. Nothing of a start tree is in the template, so every
  start applies the same Deployment and no pod is rolled by it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from truss_cli.config import TrussConfig
from truss_cli.controlplane.runtimes.kubernetes.quantities import GPU_RESOURCE, container_resources
from truss_cli.errors import UsageError
from truss_cli.image.plan import REPLICA_CONFIG_PATH, SERVER_PORT, USER_ID, VENV_PYTHON
from truss_cli.quantities import QuantityError
from truss_cli.server import protocol

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "truss-cli"
MODEL_ID_LABEL = "truss.dev/model-id"
DEPLOYMENT_ID_LABEL = "truss.dev/deployment-id"
MODEL_NAME_ANNOTATION = "truss.dev/model-name"
DEPLOYMENT_NAME_ANNOTATION = "truss.dev/deployment-name"
ACCELERATOR_ANNOTATION = "truss.dev/accelerator"

NAME_PREFIX = "truss-deployment-"
CONTAINER_NAME = "model"
PORT_NAME = "http"
# Not where a custom server's replica writes them (`/secrets`, which it owns): a mounted
# Secret is read-only, so it is mounted beside and the replica copies from it.
SECRETS_MOUNT = "/run/truss/secrets"
HOME_DIR = "/home/truss"  # the image's $HOME (templates/Dockerfile.jinja)
# 0400: only the owner may read. A Secret's files are root's; with fsGroup the kubelet makes
# them group-owned by the pod's group and adds group read (0440), and the server's process has
# that group, so the server reads them and no other user on the node can.
SECRET_FILE_MODE = 0o400

# A development pod (the tree's own layout, as the docker runtime's development container).
DEVELOPMENT_TREE_DIR = "/opt/truss/development/model"  # an emptyDir: the control plane delivers the tree
CONTROL_PORT = SERVER_PORT + 1  # the control API, on the pod's IP (every request needs the token)
CONTROL_PORT_NAME = "control"
CONTROL_TOKEN_MOUNT = "/run/truss/control"
CONTROL_TOKEN_KEY = "control_token"  # the key of the token Secret, so the file's name in the mount

# How long a deleted pod keeps serving before SIGTERM: time for the EndpointSlice change to
# reach the gateway's watch (seconds on a busy API server; the rule of thumb is 5-15 s).
PRE_STOP_SECONDS = 5

# Probe timing. Every probe is checked every PROBE_PERIOD seconds (Baseten checks every 10 s);
# a threshold in seconds from config.yaml becomes a count of failed checks.
PROBE_PERIOD = 10
PROBE_TIMEOUT = 5
# Unset thresholds: loading may take half an hour (large weights); a live server that stops
# answering for 30 s is restarted; a ready one that fails for 30 s stops getting traffic.
DEFAULT_STARTUP_SECONDS = 1800
DEFAULT_RESTART_SECONDS = 30
DEFAULT_STOP_TRAFFIC_SECONDS = 30

_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_ID_LENGTH = 63 - len(NAME_PREFIX)
_DIGEST_REFERENCE = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
# A Secret's data key (and so a file name in its volume).
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class ModelDeployment:
    """What the objects are made from, besides the deployment's config.yaml.

    `image` is a digest reference (`truss image push` prints one); `secret_name` the
    Kubernetes Secret holding the model's secret values (None when config.yaml declares none);
    `image_pull_secrets` names Secrets of type kubernetes.io/dockerconfigjson for a private
    registry.
    """

    model_id: str
    model_name: str
    deployment_id: str
    deployment_name: str
    image: str
    namespace: str
    secret_name: Optional[str] = None
    image_pull_secrets: tuple[str, ...] = field(default_factory=tuple)
    # A development deployment's pods run the development replica; `control_token_secret`
    # names the Secret whose CONTROL_TOKEN_KEY is its control API's token.
    development: bool = False
    control_token_secret: Optional[str] = None


def object_name(deployment_id: str) -> str:
    """The one name of a deployment's Deployment, Service and PodDisruptionBudget."""
    _check_id("deployment id", deployment_id)
    return NAME_PREFIX + deployment_id


def labels(model_id: str, deployment_id: str) -> dict[str, str]:
    _check_id("model id", model_id)
    _check_id("deployment id", deployment_id)
    return {MANAGED_BY: MANAGER, MODEL_ID_LABEL: model_id, DEPLOYMENT_ID_LABEL: deployment_id}


def selector(deployment_id: str) -> dict[str, str]:
    """The label selector of one deployment's pods (also what the EndpointSlice watch uses)."""
    _check_id("deployment id", deployment_id)
    return {MANAGED_BY: MANAGER, DEPLOYMENT_ID_LABEL: deployment_id}


def deployment_objects(target: ModelDeployment, config: TrussConfig) -> list[dict[str, Any]]:
    """[Deployment, Service, PodDisruptionBudget] of one deployment, in apply order."""
    return [kube_deployment(target, config), headless_service(target), pod_disruption_budget(target)]


def kube_deployment(target: ModelDeployment, config: TrussConfig) -> dict[str, Any]:
    _check_target(target, config)
    name = object_name(target.deployment_id)
    startup, liveness, readiness = _probes(config)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target, name, _accelerator_annotation(config)),
        "spec": {
            # No `replicas`: the count belongs to the `scale` subresource (the runtime's only
            # writer of it). A forced server-side apply that named one would reset the count
            # the autoscaler set, on every re-apply. The API server defaults it to 1 at creation.
            "selector": {"matchLabels": selector(target.deployment_id)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 2,
            # A rollout that has not progressed for longer than loading may take is reported
            # as failed (the pods keep trying; the control plane reads the cause from them).
            "progressDeadlineSeconds": max(600, _startup_seconds(config) + 120),
            "template": {
                "metadata": {
                    "labels": labels(target.model_id, target.deployment_id),
                    "annotations": _annotations(target, _accelerator_annotation(config)),
                },
                "spec": _pod_spec(target, config, startup, liveness, readiness),
            },
        },
    }


def headless_service(target: ModelDeployment) -> dict[str, Any]:
    """clusterIP None: no virtual IP and no kube-proxy hop. It exists for its EndpointSlices,
    which list the ready pod IPs the gateway sends traffic to."""
    name = object_name(target.deployment_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(target, name),
        "spec": {
            "clusterIP": "None",
            "selector": selector(target.deployment_id),
            "ports": [{"name": PORT_NAME, "port": protocol.DEFAULT_SERVER_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
            "publishNotReadyAddresses": False,
        },
    }


def pod_disruption_budget(target: ModelDeployment) -> dict[str, Any]:
    """`maxUnavailable: 1` at every replica count: a node drain evicts at most one pod of a
    deployment at a time. Not `minAvailable: 1`: with one replica that would block every node
    drain forever (operators then delete the PDB by hand); with `maxUnavailable: 1` a
    one-replica deployment is briefly down during a drain, and the gateway parks its requests
    until the replacement is ready, as it does when waking from zero. Crash-looping pods may
    always be evicted (`AlwaysAllow`), so a broken pod never blocks a drain either."""
    name = object_name(target.deployment_id)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(target, name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(target.deployment_id)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


# -- the pod ------------------------------------------------------------------------------


def _pod_spec(target: ModelDeployment, config: TrussConfig, startup: dict, liveness: dict, readiness: dict) -> dict[str, Any]:
    custom = config.docker_server is not None
    user_id = _user_id(config)
    environment: list[dict[str, Any]] = [
        # Each pod's own name as its replica id: the server repeats it in every answer's
        # x-truss-replica-id, so the gateway knows which pod answered.
        {"name": protocol.REPLICA_ID_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # A failed load() keeps the server up reporting why (status route), for the control plane.
        {"name": protocol.STAY_UP_ON_LOAD_FAILURE_ENV, "value": "1"},
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if not custom:
        mounts.append({"name": "home", "mountPath": HOME_DIR})
        volumes.append({"name": "home", "emptyDir": {}})
    if target.development:
        mounts.append({"name": "development-tree", "mountPath": DEVELOPMENT_TREE_DIR})
        volumes.append({"name": "development-tree", "emptyDir": {}})
        mounts.append({"name": "control-token", "mountPath": CONTROL_TOKEN_MOUNT, "readOnly": True})
        volumes.append({"name": "control-token", "secret": {"secretName": target.control_token_secret,
                                                            "defaultMode": SECRET_FILE_MODE}})
    if target.secret_name:
        environment.append({"name": protocol.SECRETS_DIR_ENV, "value": SECRETS_MOUNT})  # a path, not a value
        mounts.append({"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True})
        volumes.append({"name": "secrets", "secret": {"secretName": target.secret_name, "defaultMode": SECRET_FILE_MODE}})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",  # a digest never changes: pulling again is waste
        "ports": [{"name": PORT_NAME, "containerPort": protocol.DEFAULT_SERVER_PORT, "protocol": "TCP"}],
        "env": environment,
        "resources": _resources(config),
        "startupProbe": startup,
        "livenessProbe": liveness,
        "readinessProbe": readiness,
        "lifecycle": {"preStop": {"exec": {"command": pre_stop_command(config)}}},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": not custom,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if target.development:
        container.update(command=development_command(), workingDir=DEVELOPMENT_TREE_DIR)  # cwd as the other runtimes'
        container["ports"].append({"name": CONTROL_PORT_NAME, "containerPort": CONTROL_PORT, "protocol": "TCP"})
    pod_security: dict[str, Any] = {"runAsNonRoot": True}
    if user_id is not None:
        pod_security["runAsUser"] = user_id
        if user_id == USER_ID:  # the image made this user's own group; another uid's is unknown
            pod_security["runAsGroup"] = USER_ID
    # fsGroup: the group that may read the mounted Secret's files (the process has it too).
    pod_security.update(fsGroup=USER_ID, seccompProfile={"type": "RuntimeDefault"})
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + protocol.STOP_GRACE_SECONDS,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if target.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in target.image_pull_secrets]
    if GPU_RESOURCE in container["resources"]["limits"]:
        # GPU node pools are usually tainted so that only pods asking for a GPU land there.
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def pre_stop_command(config: TrussConfig) -> list[str]:
    """The preStop hook: keep serving for PRE_STOP_SECONDS while the gateway learns the pod is
    going. `-I -S`: no site packages or user paths, so it starts fast and no model file runs."""
    return [_replica_python(config), "-I", "-S", "-c", f"import time; time.sleep({PRE_STOP_SECONDS})"]


def _replica_python(config: TrussConfig) -> str:
    """The interpreter the image's replica runs on (image/plan.py): the venv we build, or for a
    `no_build` image its own (config.yaml's python_executable_path, else python3 on the PATH)."""
    server = config.docker_server
    if server is not None and server.no_build:
        base = config.base_image
        return (base.python_executable_path if base and base.image else "") or "python3"
    return VENV_PYTHON


def development_command() -> list[str]:
    """The development replica on the (at first empty) tree: it boots with the image's replica
    config and, its tree being empty, waits not ready (server/control/worker.py) until the control
    plane's first patch brings the start tree with its config (kubernetes/development.py). The control API binds the pod's
    address; its token is read from the mounted Secret, never from the command line or env."""
    return [
        VENV_PYTHON, "-m", "truss_cli.server.control", DEVELOPMENT_TREE_DIR,
        "--replica-config", REPLICA_CONFIG_PATH,
        "--host", "0.0.0.0", "--port", str(SERVER_PORT),
        "--control-host", "0.0.0.0", "--control-port", str(CONTROL_PORT),
        "--control-token-file", f"{CONTROL_TOKEN_MOUNT}/{CONTROL_TOKEN_KEY}",
    ]  # fmt: skip


def _user_id(config: TrussConfig) -> Optional[int]:
    """The uid the container runs as: the image's server user, a custom server's
    `run_as_user_id`, or None for a `no_build` image (its own user; runAsNonRoot still holds)."""
    server = config.docker_server
    if server is None:
        return USER_ID
    if server.run_as_user_id is not None:
        return server.run_as_user_id
    return None if server.no_build else USER_ID


def _probes(config: TrussConfig) -> tuple[dict, dict, dict]:
    checks = config.runtime.health_checks
    readiness_path = protocol.READINESS_PATH
    startup = _http_probe(readiness_path, _checks(_startup_seconds(config)))
    liveness = _http_probe("/", _checks(checks.restart_threshold_seconds or DEFAULT_RESTART_SECONDS))
    if checks.restart_check_delay_seconds:
        liveness["initialDelaySeconds"] = checks.restart_check_delay_seconds
    readiness = _http_probe(readiness_path, _checks(checks.stop_traffic_threshold_seconds or DEFAULT_STOP_TRAFFIC_SECONDS))
    return startup, liveness, readiness


def _http_probe(path: str, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": PROBE_PERIOD,
        "timeoutSeconds": PROBE_TIMEOUT,
        "failureThreshold": failure_threshold,
    }


def _startup_seconds(config: TrussConfig) -> int:
    return config.runtime.health_checks.startup_threshold_seconds or DEFAULT_STARTUP_SECONDS


def _checks(seconds: int) -> int:
    return max(1, math.ceil(seconds / PROBE_PERIOD))


def _resources(config: TrussConfig) -> dict[str, Any]:
    resources = config.resources
    try:
        return container_resources(resources.cpu, resources.memory, resources.accelerator, resources.use_gpu)
    except QuantityError as exc:
        raise UsageError(f"config.yaml resources: {exc}") from None


def _accelerator_annotation(config: TrussConfig) -> dict[str, str]:
    # The type (A10G, H100...) has no portable node label: it is kept for people and for a
    # nodeSelector a cluster's operator may add; the count is the nvidia.com/gpu limit.
    accelerator = config.resources.accelerator
    return {ACCELERATOR_ANNOTATION: accelerator} if accelerator else {}


# -- metadata and checks --------------------------------------------------------------------


def _metadata(target: ModelDeployment, name: str, extra_annotations: Optional[dict[str, str]] = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": labels(target.model_id, target.deployment_id),
        "annotations": _annotations(target, extra_annotations or {}),
    }


def _annotations(target: ModelDeployment, extra: dict[str, str]) -> dict[str, str]:
    return {MODEL_NAME_ANNOTATION: target.model_name, DEPLOYMENT_NAME_ANNOTATION: target.deployment_name, **extra}


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not _ID.match(value) or len(value) > _MAX_ID_LENGTH:
        raise UsageError(
            f"{what} {value!r} cannot name a Kubernetes object: expected lowercase letters, digits and '-' "
            f"(at most {_MAX_ID_LENGTH} characters), as the control plane's ids are"
        )


def _check_target(target: ModelDeployment, config: TrussConfig) -> None:
    if not _DIGEST_REFERENCE.match(target.image):
        raise UsageError(
            f"image {target.image!r} is not referenced by digest: expected REGISTRY/NAME@sha256:<64 hex digits>",
            hint="`truss image push DIR --registry HOST/PREFIX` prints the digest reference of a pushed image",
        )
    if target.development and (config.docker_server is not None or not target.control_token_secret):
        raise UsageError("a development deployment's pods need a model server (not a custom server) and the "
                         "Secret holding their control token")
    if config.secrets and not target.secret_name:
        raise UsageError(
            f"config.yaml declares secrets ({', '.join(sorted(config.secrets))}) but no Kubernetes Secret was named to mount"
        )
    bad = sorted(name for name in config.secrets if not _SECRET_KEY.match(name))
    if bad:
        raise UsageError(
            f"secret names {', '.join(map(repr, bad))} cannot be keys of a Kubernetes Secret: "
            "use letters, digits, '-', '_' and '.' only"
        )
