"""Running a model's image as a local container: start, wait until ready, stream logs, stop.

Secrets reach the container only here, at run time: declared secrets found in the caller's
environment as `TRUSS_SECRET_<name>` are passed through, and a secrets directory is mounted
read-only and named by `TRUSS_SECRETS_DIR`. Nothing secret is part of the image.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker
import docker.errors

from truss_cli.config import TrussConfig
from truss_cli.errors import TrussError, UsageError
from truss_cli.image.labels import LABEL_MODEL_NAME
from truss_cli.image.limits import ContainerLimits
from truss_cli.image.plan import SERVER_PORT, USER_ID, slug
from truss_cli.net import NotReady, local_url, port_in_use
from truss_cli.net import wait_until_ready as wait_for_readiness
from truss_cli.server.protocol import SECRET_ENV_PREFIX, SECRETS_DIR_ENV

SECRETS_MOUNT = "/run/truss/secrets"
HOST = "127.0.0.1"


@dataclass
class RunningContainer:
    client: docker.APIClient
    id: str
    name: str
    url: str

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

    def log_text(self) -> str:
        try:
            return self.client.logs(self.id).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return ""

    def remove(self) -> None:
        """Stop (SIGTERM, then SIGKILL after 10 s) and delete the container."""
        try:
            self.client.stop(self.id, timeout=10)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass
        try:
            self.client.remove_container(self.id, force=True)
        except docker.errors.NotFound:
            pass


def runtime_environment(config: TrussConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The declared secrets this caller has in its environment, as the container gets them."""
    environ = os.environ if environ is None else environ
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
) -> RunningContainer:
    """Start `image` with the server published on 127.0.0.1:`port`.

    The caller checks the port first (`truss_cli.net.check_port_free`), before any slow
    build; a port taken since is still reported clearly when the engine cannot bind it.
    """
    environment = dict(environment or {})
    limits = limits or ContainerLimits()
    binds = {}
    if secrets_dir is not None:
        secrets_dir = Path(secrets_dir).resolve()
        check_secrets_dir(secrets_dir)
        binds[str(secrets_dir)] = {"bind": SECRETS_MOUNT, "mode": "ro"}
        environment[SECRETS_DIR_ENV] = SECRETS_MOUNT
    name = f"truss-{slug(model_name)}-{_random.token_hex(3)}"
    host_config = client.create_host_config(
        port_bindings={SERVER_PORT: (HOST, port)},
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
            ports=[SERVER_PORT],
            host_config=host_config,
            labels={LABEL_MODEL_NAME: model_name},
        )
    except docker.errors.APIError as exc:
        raise TrussError(f"Could not create the container: {exc.explanation or exc}") from None
    container = RunningContainer(client, created["Id"], name, local_url(HOST, port))
    try:
        client.start(created["Id"])
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


def wait_until_ready(container: RunningContainer, timeout: float | None = None) -> None:
    """Block until the model answers ready; raise with the container's log if it exits.

    No timeout by default: `load()` may download gigabytes; the container exiting is what
    ends the wait early.
    """
    try:
        wait_for_readiness(container.url, container.is_running, timeout=timeout)
    except NotReady as exc:
        if container.is_running():
            raise TrussError(f"The model was not ready in time: {exc}") from None
        raise TrussError(
            f"The model server exited (code {container.exit_code()}) before it was ready. Its log:\n"
            f"{container.log_text().rstrip()}",
        ) from None
