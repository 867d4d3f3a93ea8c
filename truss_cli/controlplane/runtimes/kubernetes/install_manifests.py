"""The manifests that run the control plane itself in a cluster (`truss server manifests`).

In apply order: the Namespace (only when asked: a team usually creates namespaces with its own
policies), the database (a Secret with the user's PostgreSQL URL, or a small PostgreSQL
StatefulSet with a generated password), a ServiceAccount with a Role limited to what the
Kubernetes runtime does in this one namespace, the control plane's data volume, its
Deployment and Service, and an Ingress for the API, dashboard and gateway (one port serves all
three).

Choices worth knowing:
- The database URL reaches the control plane as an environment variable from a Secret (the
  control plane's own configuration, the one place a variable is right; a model's secrets are
  files). The control plane reads `TRUSS_DATABASE_URL` itself, so the URL (and its password)
  is never on a command line.
- SQLite is not offered: on a pod's disk it is lost with the pod, and on a volume it ties the
  control plane to one node's disk semantics; PostgreSQL is required.
- The control plane still needs a volume of its own (`/var/lib/truss-cli`): `secrets.key`,
  which encrypts the stored secrets, and the content-addressed model archives live in its data
  dir, not in the database. One replica with the `Recreate` strategy: two control planes must
  never reconcile at once, and a ReadWriteOnce volume attaches to one node.
- These objects carry `app.kubernetes.io/part-of: truss-cli`, not the runtime's
  `managed-by: truss-cli` label: the runtime owns only what it labels with a deployment id and
  must never mistake the control plane's own objects for a model's.
- The control plane builds model images, so it needs a Docker engine. By default that is a
  sidecar in its pod (`docker:dind`, a native sidecar: an init container that keeps running,
  started before the control plane and stopped after it), listening only on a unix socket in an
  emptyDir the two containers share, the socket's group the control plane's gid: nothing else
  in the cluster can reach that engine. A Docker engine in a container must be privileged, which
  the Pod Security "restricted" level forbids; so a Namespace created here for the sidecar
  enforces "privileged" and still warns and audits against "restricted". `--docker-host` names
  an engine run elsewhere instead, and the pod is "restricted" again.
- `--image-pull-secret` Secrets (kubernetes.io/dockerconfigjson) are named on every model pod,
  and the first is mounted as the control plane's Docker config: the registry credentials its
  pushes send (the Docker SDK reads `$DOCKER_CONFIG/config.json`).
- Every other container runs without root, privilege escalation or capabilities, with the
  runtime's default seccomp profile (the Pod Security "restricted" level).
"""

from __future__ import annotations

import re
import secrets as _random
from dataclasses import dataclass
from typing import Any, Optional

from truss_cli.controlplane.runtimes.kubernetes.selection import check_secret_names
from truss_cli.errors import UsageError
# One home for where the control plane's image keeps its state and what it listens on.
from truss_cli.image.control_plane_image import CACHE_DIR, DATA_DIR, PORT
from truss_cli.image.plan import USER_ID
from truss_cli.image.registry import parse_registry
from truss_cli.quantities import QuantityError, parse_memory
from truss_cli.settings import DATABASE_URL_ENV

NAME = "truss-control-plane"
DATA_VOLUME_NAME = f"{NAME}-data"
DATABASE_SECRET = f"{NAME}-database"  # key `url`: the user's --database-url
POSTGRES_NAME = "truss-postgres"  # StatefulSet, Service and Secret (key `password`)
POSTGRES_USER = "truss"
POSTGRES_DB = "truss"
POSTGRES_UID = 999  # the official postgres image's `postgres` user
DEFAULT_POSTGRES_IMAGE = "docker.io/library/postgres:16"
DATABASE_PASSWORD_ENV = "TRUSS_DATABASE_PASSWORD"
RUN_AS = USER_ID  # the image's user (truss server image), as a model image's
DEFAULT_VOLUME_SIZE = "10Gi"
# The builder sidecar: Docker's official engine-in-a-container image.
DEFAULT_DOCKER_IMAGE = "docker.io/library/docker:27-dind"
DOCKER_SOCKET_DIR = "/run/truss-docker"  # an emptyDir both containers mount
DOCKER_HOST_ENV = "DOCKER_HOST"
DOCKER_CONFIG_DIR = "/etc/truss-cli/docker"  # the first pull secret, as config.json

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_DOCKER_HOST = re.compile(r"^tcp://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^tcp://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$")


@dataclass(frozen=True)
class InstallOptions:
    """`postgres_password` is generated (secrets.token_urlsafe) when not given; tests give one
    so the golden files are stable."""

    namespace: str
    image: str
    registry: str  # HOST[:PORT]/PREFIX model images are pushed to (the control plane's --registry)
    database_url: Optional[str] = None
    with_postgres: bool = False
    host: Optional[str] = None
    create_namespace: bool = False
    ingress_class: Optional[str] = None
    volume_size: str = DEFAULT_VOLUME_SIZE
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    postgres_password: Optional[str] = None
    image_pull_secrets: tuple[str, ...] = ()
    # None: a Docker engine sidecar in the control plane's pod; else the engine's tcp:// URL.
    docker_host: Optional[str] = None
    # The registry is plain HTTP (or its certificate is not trusted): the sidecar is told so.
    insecure_registry: bool = False
    docker_image: str = DEFAULT_DOCKER_IMAGE

    @property
    def builder_sidecar(self) -> bool:
        return self.docker_host is None


def install_manifests(options: InstallOptions) -> list[dict[str, Any]]:
    _check(options)
    items: list[dict[str, Any]] = []
    if options.create_namespace:
        items.append(_namespace(options))
    if options.with_postgres:
        password = options.postgres_password or _random.token_urlsafe(32)
        items += [_secret(options, POSTGRES_NAME, {"password": password}, "database"),
                  _postgres_service(options), _postgres_statefulset(options)]
    else:
        items.append(_secret(options, DATABASE_SECRET, {"url": options.database_url or ""}, "database"))
    items += [_service_account(options), _role(options), _role_binding(options), _data_volume(options),
              _deployment(options), _service(options), _ingress(options)]
    return items


# -- checks ---------------------------------------------------------------------------------


def _check(options: InstallOptions) -> None:
    if options.database_url and options.with_postgres:
        raise UsageError("--database-url and --with-postgres were both given: choose one "
                         "(your own PostgreSQL's URL, or a small PostgreSQL in the namespace)")
    if not options.database_url and not options.with_postgres:
        raise UsageError(
            "the control plane needs a database: give --database-url postgresql://USER:PASSWORD@HOST/DB "
            "or --with-postgres",
            hint="SQLite is not offered in a cluster: on a pod's disk its state is lost when the pod goes",
        )
    if options.database_url and not options.database_url.startswith(_POSTGRES_SCHEMES):
        raise UsageError(f"--database-url: expected a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB), "
                         f"got one starting {options.database_url.split('://')[0]!r}://")
    if not _DNS_LABEL.match(options.namespace) or len(options.namespace) > 63:
        raise UsageError(f"--namespace {options.namespace!r}: expected a Kubernetes namespace name "
                         "(lowercase letters, digits and '-', at most 63 characters)")
    if not options.image.strip() or any(c.isspace() for c in options.image):
        raise UsageError(f"--image {options.image!r}: expected an image reference such as REGISTRY/truss-cli@sha256:…")
    if options.host is not None and (not _HOST.match(options.host) or len(options.host) > 253):
        raise UsageError(f"--host {options.host!r}: expected a DNS name such as truss.example.com (no scheme, port or path)")
    if options.ingress_class is not None and not _DNS_LABEL.match(options.ingress_class):
        raise UsageError(f"--ingress-class {options.ingress_class!r}: expected an IngressClass name such as nginx")
    try:
        parse_memory(options.volume_size)
    except QuantityError as exc:
        raise UsageError(f"--volume-size: {exc}") from None
    parse_registry(options.registry)
    check_secret_names(options.image_pull_secrets)
    if options.docker_host is not None and not _DOCKER_HOST.match(options.docker_host):
        raise UsageError(f"--docker-host {options.docker_host!r}: expected the engine's address as tcp://HOST:PORT "
                         "(an engine the control plane's pod reaches over the network)",
                         hint="leave --docker-host out to run a Docker engine sidecar in the control plane's pod")
    if options.docker_host is not None and options.insecure_registry:
        raise UsageError("--insecure-registry configures the Docker engine sidecar, and --docker-host replaces it",
                         hint=f"add {parse_registry(options.registry).host} to the insecure-registries of the engine "
                              "at --docker-host (its daemon.json) instead")


# -- objects --------------------------------------------------------------------------------


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "truss-cli"}


def _metadata(options: InstallOptions, name: str, component: str = NAME) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": _labels(component)}


def _namespace(options: InstallOptions) -> dict[str, Any]:
    if options.builder_sidecar:
        # The Docker engine sidecar is privileged, which only the "privileged" level admits;
        # every other pod still meets "restricted", and a pod that does not is reported.
        security = {"pod-security.kubernetes.io/enforce": "privileged",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted"}
    else:
        security = {"pod-security.kubernetes.io/enforce": "restricted"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": {**_labels(NAME), **security}},
    }


def _secret(options: InstallOptions, name: str, values: dict[str, str], component: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(options, name, f"{NAME}-{component}"),
            "type": "Opaque", "stringData": values}


def _service_account(options: InstallOptions) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(options, NAME)}


# What the Kubernetes runtime does, and nothing more, in its own namespace only (a Role, not a
# ClusterRole). "create" beside "patch": server-side apply of a missing object creates it.
_WRITE = ["get", "list", "watch", "create", "patch", "update", "delete"]
ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _WRITE},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": _WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    # Models' secrets: written and removed by the runtime; never watched.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "patch", "update", "delete"]},
    # patch: the runtime's claim and pod-deletion-cost annotations; delete: a stopped replica's pod.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
]


def _role(options: InstallOptions) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _metadata(options, NAME),
            "rules": ROLE_RULES}


def _role_binding(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(options, NAME),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": options.namespace}],
    }


def _data_volume(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(options, DATA_VOLUME_NAME),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": _storage(options)}}},
    }


def _storage(options: InstallOptions) -> str:
    return parse_memory(options.volume_size).to_kubernetes()


def _database_environment(options: InstallOptions) -> list[dict[str, Any]]:
    if options.with_postgres:
        # The password lives in one Secret; the kubelet builds the URL from it ($(VAR) refers
        # to a variable defined earlier in the list). token_urlsafe needs no URL escaping.
        return [
            {"name": DATABASE_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": POSTGRES_NAME, "key": "password"}}},
            {"name": DATABASE_URL_ENV,
             "value": f"postgresql://{POSTGRES_USER}:$({DATABASE_PASSWORD_ENV})@{POSTGRES_NAME}:5432/{POSTGRES_DB}"},
        ]
    return [{"name": DATABASE_URL_ENV, "valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "url"}}}]


def _restricted_container() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _restricted_pod(uid: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _non_root(uid: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}


def control_plane_command(options: InstallOptions) -> list[str]:
    """What the control plane's container runs (`truss server start` in the foreground, with
    the Kubernetes runtime in its namespace, pushing to the registry)."""
    command = ["truss", "server", "start", "--foreground", "--host", "0.0.0.0", "--port", str(PORT),
               "--data-dir", DATA_DIR, "--runtime", "kubernetes", "--namespace", options.namespace,
               "--registry", options.registry]
    for name in options.image_pull_secrets:
        command += ["--image-pull-secret", name]
    return command


def _docker_environment(options: InstallOptions) -> list[dict[str, Any]]:
    host = options.docker_host or f"unix://{DOCKER_SOCKET_DIR}/docker.sock"
    environment = [{"name": DOCKER_HOST_ENV, "value": host}]
    if options.image_pull_secrets:
        environment.append({"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR})
    return environment


def _docker_sidecar(options: InstallOptions) -> dict[str, Any]:
    """The Docker engine the control plane builds and pushes with: reachable only through its
    unix socket in the shared emptyDir (no TCP listener), the socket's group the control
    plane's gid. `dockerd` as the first argument keeps the image's entrypoint from adding its
    default TCP listener while it still sets up the container for the engine (`dind`)."""
    socket = f"unix://{DOCKER_SOCKET_DIR}/docker.sock"
    args = ["dockerd", f"--host={socket}", f"--group={RUN_AS}"]
    if options.insecure_registry:
        args.append(f"--insecure-registry={parse_registry(options.registry).host}")
    return {
        "name": "docker",
        "image": options.docker_image,
        "args": args,
        # A native sidecar (Kubernetes 1.29+): started, and answering, before the control plane.
        "restartPolicy": "Always",
        "env": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        "startupProbe": {"exec": {"command": ["docker", f"--host={socket}", "version"]},
                         "periodSeconds": 2, "timeoutSeconds": 5, "failureThreshold": 60},
        # Model builds install Python packages: memory for pip, and no CPU limit to throttle it.
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "8Gi"}},
        "volumeMounts": [
            {"name": "docker-socket", "mountPath": DOCKER_SOCKET_DIR},
            # Layers and images: an emptyDir (overlayfs cannot sit on the container's overlay root).
            {"name": "docker-data", "mountPath": "/var/lib/docker"},
        ],
        "securityContext": {"privileged": True, "runAsNonRoot": False, "runAsUser": 0},
    }


def _deployment(options: InstallOptions) -> dict[str, Any]:
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
    command = control_plane_command(options)
    container = {
        "name": "control-plane",
        "image": options.image,
        "command": command[:1],
        "args": command[1:],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            *_database_environment(options),
            # A read-only root: the home and the cache (build contexts, environments) are scratch.
            {"name": "HOME", "value": "/tmp"},
            {"name": "TRUSS_CACHE_DIR", "value": CACHE_DIR},
            *_docker_environment(options),
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        # Migrations run at start: allow a minute before the port must answer.
        "startupProbe": {**probe, "failureThreshold": 12},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": CACHE_DIR},
            *_docker_mounts(options),
        ],
        # Per container: the builder sidecar (when there is one) runs as root.
        "securityContext": {**_non_root(RUN_AS), **_restricted_container()},
    }
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        **({"initContainers": [_docker_sidecar(options)]} if options.builder_sidecar else {}),
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": DATA_VOLUME_NAME}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "cache", "emptyDir": {}},
            *_docker_volumes(options),
        ],
        # fsGroup: the data volume and the Docker config are the control plane's group's.
        "securityContext": {"fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        # uvicorn's graceful shutdown is 10 s; the rest is margin.
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": False,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, NAME),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _labels(NAME)},
            "template": {"metadata": {"labels": _labels(NAME)}, "spec": pod},
        },
    }


def _docker_mounts(options: InstallOptions) -> list[dict[str, Any]]:
    mounts = []
    if options.builder_sidecar:
        mounts.append({"name": "docker-socket", "mountPath": DOCKER_SOCKET_DIR})
    if options.image_pull_secrets:
        mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True})
    return mounts


def _docker_volumes(options: InstallOptions) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    if options.builder_sidecar:
        volumes += [{"name": "docker-socket", "emptyDir": {}}, {"name": "docker-data", "emptyDir": {}}]
    if options.image_pull_secrets:
        # The first pull secret is also the push credential: its .dockerconfigjson is a Docker config.
        volumes.append({"name": "docker-config", "secret": {
            "secretName": options.image_pull_secrets[0], "defaultMode": 0o440,
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
    return volumes


def _service(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, NAME),
        "spec": {"selector": _labels(NAME), "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def _ingress(options: InstallOptions) -> dict[str, Any]:
    rule: dict[str, Any] = {"http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": NAME, "port": {"name": "http"}}},
    }]}}
    if options.host:
        rule = {"host": options.host, **rule}
    spec: dict[str, Any] = {"rules": [rule]}
    if options.ingress_class:
        spec = {"ingressClassName": options.ingress_class, **spec}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": _metadata(options, NAME), "spec": spec}


def _postgres_service(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, POSTGRES_NAME, POSTGRES_NAME),
        "spec": {"selector": _labels(POSTGRES_NAME),
                 "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}]},
    }


def _postgres_statefulset(options: InstallOptions) -> dict[str, Any]:
    ready = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER, "-d", POSTGRES_DB]},
             "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "postgres",
        "image": options.postgres_image,
        "ports": [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}],
        "env": [
            {"name": "POSTGRES_USER", "value": POSTGRES_USER},
            {"name": "POSTGRES_DB", "value": POSTGRES_DB},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": POSTGRES_NAME, "key": "password"}}},
            # A subdirectory: a fresh volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {**ready, "failureThreshold": 3},
        "livenessProbe": {**ready, "failureThreshold": 6, "initialDelaySeconds": 30},
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _restricted_container(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(options, POSTGRES_NAME, POSTGRES_NAME),
        "spec": {
            "serviceName": POSTGRES_NAME,
            "replicas": 1,
            "selector": {"matchLabels": _labels(POSTGRES_NAME)},
            "template": {
                "metadata": {"labels": _labels(POSTGRES_NAME)},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                    "securityContext": _restricted_pod(POSTGRES_UID),
                    "terminationGracePeriodSeconds": 60,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": _labels(POSTGRES_NAME)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": _storage(options)}}},
            }],
        },
    }
