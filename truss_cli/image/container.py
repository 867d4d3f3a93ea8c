"""Running a model's image as a local container: start, wait until ready, stream logs, stop.

Secrets reach the container only here, at run time: declared secrets found in the caller's
environment as `TRUSS_SECRET_<name>` are passed through, and a secrets directory is mounted
read-only and named by `TRUSS_SECRETS_DIR`. Nothing secret is part of the image.
"""

from __future__ import annotations

import os
import secrets as _random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import docker
import docker.errors
import httpx

from truss_cli.config import TrussConfig
from truss_cli.errors import TrussError
from truss_cli.image.context import LABEL_MODEL_NAME, SERVER_PORT, slug

SECRET_ENV_PREFIX = "TRUSS_SECRET_"
SECRETS_MOUNT = "/run/truss/secrets"
READY_PATH = "/v1/models/model"


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


def ensure_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise TrussError(
                f"Port {port} on 127.0.0.1 is already in use",
                hint="Stop whatever listens there, or pick another port with --port.",
            ) from None


def start_container(
    client: docker.APIClient,
    image: str,
    model_name: str,
    port: int,
    environment: dict[str, str] | None = None,
    secrets_dir: Path | None = None,
) -> RunningContainer:
    """Start `image` with the server published on 127.0.0.1:`port`."""
    ensure_port_free(port)
    environment = dict(environment or {})
    binds = {}
    if secrets_dir is not None:
        secrets_dir = Path(secrets_dir).resolve()
        if not secrets_dir.is_dir():
            raise TrussError(f"{secrets_dir}: not a directory", hint="--secrets-dir takes a directory with one file per secret.")
        binds[str(secrets_dir)] = {"bind": SECRETS_MOUNT, "mode": "ro"}
        environment["TRUSS_SECRETS_DIR"] = SECRETS_MOUNT
    name = f"truss-{slug(model_name)}-{_random.token_hex(3)}"
    host_config = client.create_host_config(
        port_bindings={SERVER_PORT: ("127.0.0.1", port)},
        binds=binds or None,
        # A tiny init as PID 1 forwards SIGTERM to the server and reaps its children.
        init=True,
    )
    created = client.create_container(
        image,
        name=name,
        environment=environment,
        ports=[SERVER_PORT],
        host_config=host_config,
        labels={LABEL_MODEL_NAME: model_name},
    )
    container = RunningContainer(client, created["Id"], name, f"http://127.0.0.1:{port}")
    try:
        client.start(created["Id"])
    except docker.errors.APIError as exc:
        container.remove()
        message = exc.explanation or str(exc)
        if "address already in use" in message or "port is already allocated" in message:
            raise TrussError(
                f"Port {port} on 127.0.0.1 is already in use",
                hint="Stop whatever listens there, or pick another port with --port.",
            ) from None
        raise TrussError(f"Could not start the container: {message}") from None
    return container


def wait_until_ready(
    container: RunningContainer, timeout: float = 600.0, on_wait: Callable[[], None] | None = None
) -> None:
    """Block until the model answers ready; raise with the container's log if it exits."""
    deadline = time.monotonic() + timeout
    url = container.url + READY_PATH
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not container.is_running():
                raise TrussError(
                    f"The model server exited before it was ready. Its log:\n{container.log_text().rstrip()}",
                )
            if on_wait is not None:
                on_wait()
            time.sleep(0.1)
    raise TrussError(f"The model was not ready after {timeout:.0f} s ({url})")
