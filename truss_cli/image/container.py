"""Running a model's image as a local container: start, wait until ready, stream logs, stop.

The supervisor learns how the model is doing from the server's status route, never from its
log: the container runs with protocol.STAY_UP_ON_LOAD_FAILURE_ENV, so a failed load stays
observable (phase, summary, traceback) until the supervisor removes the container. Each
container gets a replica id, and an answer without it is some other server's.

Secrets reach the container only here, at run time: declared secrets found in the caller's
environment as `TRUSS_SECRET_<name>` are passed through, and a secrets directory is mounted
read-only and named by `TRUSS_SECRETS_DIR`. Nothing secret is part of the image.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import docker
import docker.errors
import httpx

from truss_cli.config import TrussConfig
from truss_cli.errors import TrussError, UsageError
from truss_cli.image.labels import LABEL_MODEL_NAME
from truss_cli.image.limits import ContainerLimits
from truss_cli.image.plan import SERVER_PORT, USER_ID, slug
from truss_cli.net import local_url, port_in_use
from truss_cli.server import protocol
from truss_cli.server.protocol import SECRET_ENV_PREFIX, SECRETS_DIR_ENV
from truss_cli.server.status import FAILED, READY, ReplicaStatus
from truss_cli.supervision import LogSink, ReplicaFailed

SECRETS_MOUNT = "/run/truss/secrets"
HOST = "127.0.0.1"
_POLL_SECONDS = 0.1


@dataclass
class RunningContainer:
    client: docker.APIClient
    id: str
    name: str
    url: str
    replica_id: str = field(default_factory=lambda: _random.token_hex(8))

    def is_running(self) -> bool:
        try:
            return bool(self.client.inspect_container(self.id)["State"]["Running"])
        except docker.errors.NotFound:
            return False

    def exit_code(self) -> int | None:
        try:
            return self.client.inspect_container(self.id)["State"]["ExitCode"]
        except docker.errors.NotFound:
            return None

    def logs(self, follow: bool = False) -> Iterator[bytes]:
        return self.client.logs(self.id, stream=True, follow=follow)

    def stream_logs(self, sink: LogSink) -> Optional[int]:
        """Copy the container's log to `sink` until it exits; its exit code."""
        for chunk in self.logs(follow=True):
            sink.write(chunk)
            sink.flush()
        return self.exit_code()

    def status(self, client: httpx.Client) -> Optional[ReplicaStatus]:
        """The server's status, when this container's server answers (None otherwise)."""
        try:
            answer = client.get(self.url + protocol.STATUS_PATH)
        except httpx.HTTPError:
            return None
        if answer.headers.get(protocol.REPLICA_ID_HEADER) != self.replica_id:
            return None  # not up yet, or another server answers at that address
        try:
            return ReplicaStatus.from_json(answer.text)
        except (ValueError, TypeError):
            return None

    def log_text(self) -> str:
        try:
            return self.client.logs(self.id).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return ""

    def remove(self) -> None:
        """Stop (SIGTERM: the server drains; SIGKILL after the grace) and delete the container."""
        try:
            self.client.stop(self.id, timeout=protocol.STOP_GRACE_SECONDS)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass
        try:
            self.client.remove_container(self.id, force=True)
        except docker.errors.NotFound:
            pass


def runtime_environment(config: TrussConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The declared secrets found in `environ` (the caller's), as the container gets them."""
    return {
        f"{SECRET_ENV_PREFIX}{name}": environ[f"{SECRET_ENV_PREFIX}{name}"]
        for name in config.secrets
        if f"{SECRET_ENV_PREFIX}{name}" in environ
    }


def check_secrets_dir(secrets_dir: Path) -> None:
    """Fail unless the container's user can read every file of `secrets_dir`.

    The mount keeps the host's owners and modes, and the server runs as uid USER_ID: a
    root-owned 0600 file would only fail inside the model, as a PermissionError.
    """
    if not secrets_dir.is_dir():
        raise UsageError(f"{secrets_dir}: not a directory", hint="--secrets-dir takes a directory with one file per secret")
    if not _readable_by_container(secrets_dir.stat(), stat.S_IXOTH):
        raise TrussError(
            f"{secrets_dir}: the container cannot open files in this directory",
            hint=f"the container runs as uid {USER_ID}: make it searchable (chmod o+x) or mount a copy",
        )
    unreadable = []
    for path in sorted(secrets_dir.iterdir()):
        try:
            info = path.stat()
        except OSError:  # a dangling link: the server reports the secret as missing
            continue
        if stat.S_ISREG(info.st_mode) and not _readable_by_container(info, stat.S_IROTH):
            unreadable.append(path.name)
    if unreadable:
        raise TrussError(
            f"{secrets_dir}: the container cannot read the secret files {', '.join(unreadable)}",
            hint=f"the container runs as uid {USER_ID}: make them readable (chmod o+r) or mount a copy",
        )


def _readable_by_container(info: os.stat_result, other_bit: int) -> bool:
    # The permission bits for "other", shifted to the owner's or group's when those are USER_ID.
    if info.st_uid == USER_ID:
        return bool(info.st_mode & (other_bit << 6))
    if info.st_gid == USER_ID:
        return bool(info.st_mode & (other_bit << 3))
    return bool(info.st_mode & other_bit)


def start_container(
    client: docker.APIClient,
    image: str,
    model_name: str,
    port: int,
    environment: dict[str, str] | None = None,
    secrets_dir: Path | None = None,
    limits: ContainerLimits | None = None,
    expose_errors: bool = False,
    replica_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    before_start: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
    working_dir: str | None = None,
    also_publish: Sequence[int] = (),
    user: str | None = None,
) -> RunningContainer:
    """Start `image` with the server published on 127.0.0.1:`port` (0: a free port the engine picks).

    The caller checks the port first (`truss_cli.net.check_port_free`), before any slow
    build; a port taken since is still reported clearly when the engine cannot bind it.
    `expose_errors`: error responses carry the exception's type and message. `labels` are
    added to the container's; `before_start` gets the created container's id (to copy files
    into it before anything runs). `command` / `working_dir` replace the image's CMD and
    WORKDIR; `also_publish` are more container ports, each published on 127.0.0.1 at a port
    the engine picks (`published_port` finds it), so only this machine reaches them. `user`
    replaces the image's USER (a development container starts as root to provision itself).
    """
    replica_id = replica_id or _random.token_hex(8)
    environment = {
        **(environment or {}),
        protocol.REPLICA_ID_ENV: replica_id,
        protocol.STAY_UP_ON_LOAD_FAILURE_ENV: "1",
    }
    if expose_errors:
        environment[protocol.EXPOSE_ERRORS_ENV] = "1"
    limits = limits or ContainerLimits()
    binds = {}
    if secrets_dir is not None:
        secrets_dir = Path(secrets_dir).resolve()
        check_secrets_dir(secrets_dir)
        binds[str(secrets_dir)] = {"bind": SECRETS_MOUNT, "mode": "ro"}
        environment[SECRETS_DIR_ENV] = SECRETS_MOUNT
    name = f"truss-{slug(model_name)}-{_random.token_hex(3)}"
    host_config = client.create_host_config(
        port_bindings={SERVER_PORT: (HOST, port or None), **{extra: (HOST, None) for extra in also_publish}},
        binds=binds or None,
        # A tiny init as PID 1 forwards SIGTERM to the server and reaps its children.
        init=True,
        nano_cpus=limits.nano_cpus,
        mem_limit=limits.memory_bytes,
    )
    try:
        created = client.create_container(
            image,
            name=name,
            environment=environment,
            ports=[SERVER_PORT, *also_publish],
            host_config=host_config,
            command=list(command) if command is not None else None,
            working_dir=working_dir,
            user=user,
            labels={**(labels or {}), LABEL_MODEL_NAME: model_name},
        )
    except docker.errors.APIError as exc:
        raise TrussError(f"Could not create the container: {exc.explanation or exc}") from None
    container = RunningContainer(client, created["Id"], name, local_url(HOST, port), replica_id)
    try:
        if before_start is not None:
            before_start(created["Id"])
        client.start(created["Id"])
        if port == 0:
            container.url = local_url(HOST, published_port(client, created["Id"], SERVER_PORT))
    except BaseException as exc:
        # Also on Ctrl-C or SIGTERM here: the caller has no handle to clean up with yet.
        container.remove()
        if not isinstance(exc, docker.errors.APIError):
            raise
        message = exc.explanation or str(exc)
        if "address already in use" in message or "port is already allocated" in message:
            raise port_in_use(HOST, port) from None
        raise TrussError(f"Could not start the container: {message}") from None
    return container


def published_port(client: docker.APIClient, container_id: str, container_port: int) -> int:
    """The host port the engine published `container_port` of a started container on."""
    (binding, *_) = client.port(container_id, container_port)
    return int(binding["HostPort"])


def wait_until_ready(container: RunningContainer, timeout: float | None = None) -> None:
    """Block until the model reports ready at the status route.

    Raises ReplicaFailed when it reports a failed load (with its summary and traceback) or
    the container exits first. No timeout by default: `load()` may download gigabytes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    # The container is on this machine: a proxy from the environment must not see the polls.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            status = container.status(client)
            if status is not None and status.phase == READY:
                return
            if status is not None and status.phase == FAILED:
                raise ReplicaFailed(status.summary, None, status.traceback)
            if not container.is_running():
                raise ReplicaFailed(None, container.exit_code())
            if deadline is not None and time.monotonic() > deadline:
                raise TrussError(f"The model in {container.name} was not ready within {timeout:.0f} s")
            time.sleep(_POLL_SECONDS)
