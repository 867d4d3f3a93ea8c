"""Images through a registry: push a built image and get its digest reference, pull one back by digest.

A cluster runs what a registry serves, and a tag can move; so what leaves this module is a
reference by digest (`HOST/PREFIX/NAME@sha256:…`), which names exactly the bytes pushed.
The digest comes from the push's own final event (the engine's `aux` record), not from a
second call. Credentials are the Docker SDK's business: the client reads the Docker config
(`~/.docker/config.json` or `$DOCKER_CONFIG`: `auths`, `credsStore`, `credHelpers`) when it
is created and sends the matching entry with each push and pull; `auth_config` overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import docker
import docker.errors

from truss_cli.errors import TrussError, UsageError
from truss_cli.image.build import split_tag

# Docker's reference grammar (distribution/reference), the parts a registry option may hold.
_DOMAIN_PART = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_HOST = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?")
_PATH_PART = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DIGEST_REFERENCE = re.compile(r"(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")
_MAX_NAME_LENGTH = 255
_EXAMPLE = "registry.example.com/team or 127.0.0.1:5000/models"

# How the engine words a registry it cannot talk to, and one that refuses the credentials.
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "server gave http response to https client",
    "x509:",
    "tls:",
    "connection reset",
    "no route to host",
)
_UNAUTHORIZED = ("no basic auth credentials", "unauthorized", "authentication required", "denied", "forbidden")


@dataclass(frozen=True)
class Registry:
    """Where images go: a registry host (`host[:port]`) and a repository prefix (may be empty)."""

    host: str
    prefix: str = ""

    def repository(self, name: str) -> str:
        return "/".join(part for part in (self.host, self.prefix, name) if part)

    def __str__(self) -> str:
        return self.repository("")


@dataclass(frozen=True)
class LayerProgress:
    """One progress event of a push or pull: a layer (short id) and what the engine says about it.

    `status` is the engine's word ("Preparing", "Waiting", "Pushing", "Pushed", "Layer already
    exists", "Downloading", "Pull complete"...); `current`/`total` are bytes while transferring.
    """

    layer: str
    status: str
    current: int | None = None
    total: int | None = None

    @property
    def done(self) -> bool:
        return self.status in ("Pushed", "Layer already exists", "Pull complete", "Already exists")


ProgressCallback = Callable[[LayerProgress], None]


def parse_registry(text: str) -> Registry:
    """`HOST[:PORT][/PREFIX]` -> Registry; a UsageError that shows the expected form otherwise."""
    option = f"--registry {text!r}"
    if "://" in text:
        bare = text.split("://", 1)[1].rstrip("/")
        raise UsageError(
            f"{option}: give the registry as HOST[:PORT]/PREFIX, without a scheme (Docker chooses https, "
            "or http for a loopback or insecure registry)",
            hint=f"--registry {bare}" if bare else f"for example --registry {_EXAMPLE}",
        )
    if text != text.lower():
        raise UsageError(
            f"{option}: registry hosts and repository names are lowercase",
            hint=f"--registry {text.lower()}",
        )
    host, _, prefix = text.strip().rstrip("/").partition("/")
    if not _HOST.fullmatch(host):
        raise UsageError(
            f"{option}: {host!r} is not a registry host (HOST or HOST:PORT)", hint=f"for example --registry {_EXAMPLE}"
        )
    if "." not in host and ":" not in host and host != "localhost":
        # Docker reads a first component without '.' or ':' as a Docker Hub account, not a host.
        raise UsageError(
            f"{option}: Docker would read {host!r} as a Docker Hub account, not a registry host "
            "(a host has a '.' or a ':PORT', or is localhost)",
            hint=f"for Docker Hub: --registry docker.io/{text.strip().rstrip('/')}",
        )
    if prefix and not all(_PATH_PART.fullmatch(part) for part in prefix.split("/")):
        raise UsageError(
            f"{option}: prefix {prefix!r} is not a repository path (lowercase letters and digits, separated "
            "by '.', '_', '-' within a part and '/' between parts)",
            hint=f"for example --registry {_EXAMPLE}",
        )
    return Registry(host, prefix)


def push(
    client: docker.APIClient,
    image_ref: str,
    registry: str | Registry,
    on_progress: ProgressCallback | None = None,
    auth_config: Mapping[str, str] | None = None,
) -> str:
    """Push local image `image_ref` (`name:tag`) to `registry`; its reference by digest.

    The image is tagged `HOST/PREFIX/NAME:TAG` (NAME: the last part of the local repository),
    pushed, and `HOST/PREFIX/NAME@sha256:…` returned. The registry tag stays on this machine
    (`docker images` shows what was pushed where).
    """
    target = registry if isinstance(registry, Registry) else parse_registry(registry)
    local_repository, tag = split_tag(image_ref)
    repository = target.repository(local_repository.rsplit("/", 1)[-1])
    if len(repository) > _MAX_NAME_LENGTH:
        raise UsageError(f"{repository!r} is longer than the {_MAX_NAME_LENGTH} characters an image name may have")
    pushed = f"{repository}:{tag}"
    try:
        client.tag(image_ref, repository, tag)
    except docker.errors.ImageNotFound:
        raise TrussError(f"No local image {image_ref} to push", hint="build it first: `truss image build`") from None
    except docker.errors.APIError as exc:
        raise TrussError(f"Could not tag {image_ref} as {pushed}: {exc.explanation or exc}") from None
    try:
        events = client.push(repository, tag=tag, stream=True, decode=True, auth_config=_auth(auth_config))
        digest = _follow(events, on_progress, target.host, f"push {pushed}")
    except docker.errors.APIError as exc:
        raise _registry_error(target.host, f"push {pushed}", exc.explanation or str(exc)) from None
    if digest is None:
        # An engine that sent no aux record: the digest it recorded for this repository.
        digest = _recorded_digest(client, pushed, repository)
    return f"{repository}@{digest}"


def pull_by_digest(
    client: docker.APIClient,
    reference: str,
    on_progress: ProgressCallback | None = None,
    auth_config: Mapping[str, str] | None = None,
) -> str:
    """Pull `HOST/PREFIX/NAME@sha256:…` (layers this machine has are not fetched again); the local image id."""
    match = _DIGEST_REFERENCE.fullmatch(reference)
    if match is None:
        raise UsageError(
            f"{reference!r} is not a reference by digest",
            hint="expected HOST[:PORT]/PREFIX/NAME@sha256:<64 hex digits>, as `truss image push` prints",
        )
    repository, digest = match.group("repository"), match.group("digest")
    host = repository.split("/", 1)[0]
    try:
        events = client.pull(repository, tag=digest, stream=True, decode=True, auth_config=_auth(auth_config))
        _follow(events, on_progress, host, f"pull {reference}")
    except docker.errors.APIError as exc:
        raise _registry_error(host, f"pull {reference}", exc.explanation or str(exc)) from None
    return client.inspect_image(reference)["Id"]


def _auth(auth_config: Mapping[str, str] | None) -> dict[str, str] | None:
    # None lets the SDK take the Docker config's entry for the registry.
    return dict(auth_config) if auth_config is not None else None


def _follow(events: Iterable[dict], on_progress: ProgressCallback | None, host: str, action: str) -> str | None:
    """Report the engine's events; raise on its error event; the digest of the aux record, if any."""
    digest = None
    for event in events:
        if "error" in event:
            message = (event.get("errorDetail") or {}).get("message") or event["error"]
            raise _registry_error(host, action, message)
        aux = event.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = aux["Digest"]
        if on_progress is not None and event.get("id") and event.get("status"):
            detail = event.get("progressDetail") or {}
            on_progress(LayerProgress(event["id"], event["status"], detail.get("current"), detail.get("total")))
    return digest


def _recorded_digest(client: docker.APIClient, pushed: str, repository: str) -> str:
    for repo_digest in client.inspect_image(pushed).get("RepoDigests") or []:
        name, _, digest = repo_digest.partition("@")
        if name == repository:
            return digest
    raise TrussError(f"The engine pushed {pushed} but reported no digest for it")


def _registry_error(host: str, action: str, message: str) -> TrussError:
    lowered = message.lower()
    if any(word in lowered for word in _UNREACHABLE):
        # The engine's message shows the URL it tried: plain HTTP for loopback and insecure registries.
        if f"http://{host}/" in message:
            check = f"`curl -i http://{host}/v2/`"
        else:
            check = (
                f"`curl -i https://{host}/v2/` (a plain-HTTP registry must be loopback or in the engine's "
                "`insecure-registries`)"
            )
        return TrussError(
            f"Registry {host} is not reachable, so the engine could not {action} ({message.strip()})",
            hint=f"Check the host and port in --registry, and that the registry answers: {check}.",
        )
    if any(word in lowered for word in _UNAUTHORIZED):
        return TrussError(
            f"Registry {host} refused the credentials, so the engine could not {action} ({message.strip()})",
            hint=(
                f"Log in with `docker login {host}` (stored in the Docker config, ~/.docker/config.json or "
                "$DOCKER_CONFIG, which is read here too), or check that the account may write to this repository."
            ),
        )
    return TrussError(f"Could not {action} ({host}): {message.strip()}")
