"""The Docker engine: connecting with a clear error, and finding images this tool built."""

from __future__ import annotations

from typing import Mapping

import docker
import docker.errors

from truss_cli.errors import TrussError, UsageError
from truss_cli.image.labels import LABEL_BUILD_KEY

# Builds stream for minutes with long silences (a large pip install); a short read timeout
# would abort them.
_TIMEOUT_SECONDS = 3600


def connect(environ: Mapping[str, str]) -> docker.APIClient:
    """A low-level client for the engine `environ` names (DOCKER_HOST, DOCKER_TLS_VERIFY, ...;
    default: the local socket)."""
    where = environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=_TIMEOUT_SECONDS, environment=dict(environ)).api
        client.ping()
    except docker.errors.DockerException as exc:
        raise TrussError(
            f"No Docker engine reachable at {where} ({_short(exc)})",
            hint=(
                "Start one: `sudo systemctl start docker`, or `sudo dockerd > /tmp/dockerd.log 2>&1 &` on a machine "
                "without systemd, or open Docker Desktop; if it runs elsewhere, set DOCKER_HOST."
            ),
        ) from None
    return client


def image_id(client: docker.APIClient, reference: str) -> str | None:
    """The id of a local image, or None when it is not on this machine.

    Raises UsageError for a reference the engine cannot parse (`Bad:Name`): no build could
    use it either.
    """
    try:
        return client.inspect_image(reference)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 400:
            raise UsageError(f"{reference!r} is not a valid image name ({_short(exc.explanation or exc)})") from None
        raise


def find_built_image(client: docker.APIClient, build_key: str) -> str | None:
    """A local image built from exactly this build key, if there is one."""
    images = client.images(filters={"label": f"{LABEL_BUILD_KEY}={build_key}"})
    return images[0]["Id"] if images else None


def _short(exc: object) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
