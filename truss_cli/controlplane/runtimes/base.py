"""The one protocol every runtime speaks, and the data it speaks in.

The control plane never branches on a runtime's kind: it builds a `BuildRequest`, keeps the
`Artifact` and `Handle` it gets back (as JSON, in its store) and hands them back unchanged.
What a runtime needs to find its replica again lives in `Handle.data` / `Artifact.data`,
which only that runtime reads. Replicas are addressed by URL, never by pid, so a runtime
whose replicas run elsewhere (Kubernetes pods) fits the same shape; an address known only
after start comes back through `status` (ObservedStatus.url, and a development replica's
control API through ObservedStatus.control_url).
"""

from __future__ import annotations

import os
import secrets as _random
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncGenerator, Iterator, Mapping, Optional, Protocol

from truss_cli.config import TrussConfig
from truss_cli.errors import TrussError
from truss_cli.server import protocol
from truss_cli.server.status import FAILED, LOADING, READY, STARTING, STOPPING

# What `status` observes: the replica's own phases, and GONE when nothing of it runs any more
# (exited, killed, removed). A replica is only ever GONE by observation, never by its say-so.
GONE = "gone"
OBSERVED_PHASES = (STARTING, LOADING, READY, FAILED, STOPPING, GONE)


class BuildError(TrussError):
    """`prepare` failed. The message is one line (the cause); the whole story is in the build log."""


def one_line_cause(message: str) -> str:
    """A build failure's message as one line for `status_detail`: its first line, and when
    that only introduces the output below it ("installing the requirements failed (exit code
    1):"), the output's last line too, which is where installers put the reason."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        return f"{first} {lines[-1].lstrip('╰─▶×|> ')}"
    return first


@dataclass(frozen=True)
class BuildRequest:
    """What to build. Derived from a deployment row and its unpacked archive, so never persisted."""

    deployment_id: str
    model_dir: Path  # the unpacked archive; must stay in place as long as the artifact is used
    config: TrussConfig  # validated (truss_cli.config.load_config)
    build_log: Path  # the build's output goes here, one timestamped line at a time (logfile.py)
    # Who the build is for: a runtime whose objects carry them (Kubernetes labels) reads them.
    model_id: Optional[str] = None
    deployment_name: Optional[str] = None


@dataclass(frozen=True)
class Artifact:
    """What `prepare` made. `reference` names it for people (an image tag, an environment
    path); `data` is the runtime's own record of it."""

    kind: str
    deployment_id: str
    reference: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Artifact":
        return cls(data["kind"], data["deployment_id"], data["reference"], dict(data.get("data") or {}))


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica to start. `secrets` are handed over at start only: `to_dict` leaves them
    out, so persisting a spec never writes a value."""

    deployment_id: str
    artifact: Artifact
    replica_id: str = field(default_factory=lambda: _random.token_hex(8))
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # name -> value
    environment: dict[str, str] = field(default_factory=dict)  # beyond config.yaml's own
    # A failed load() leaves the replica up, reporting the failure, so the control plane
    # reads the cause from its status instead of guessing from an exit code.
    stay_up_on_load_failure: bool = True
    expose_errors: bool = False
    # A development replica (docs/live-reload.md): it serves a private copy of `tree_dir`
    # (a materialised tree whose hash is `tree_hash`; the replica patches its files in place)
    # and runs the control API. The runtime puts the control API's URL and a file holding its
    # token in the Handle's data (CONTROL_URL, CONTROL_TOKEN_FILE), so the control plane can
    # call it after its own restart without knowing the runtime's kind.
    development: bool = False
    tree_dir: Optional[str] = None
    tree_hash: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("secrets")
        data["artifact"] = self.artifact.to_dict()
        return data


@dataclass(frozen=True)
class Handle:
    """A started replica, found again by `data` (pid and start time, container id, ...)."""

    kind: str
    deployment_id: str
    replica_id: str
    # None for a replica that died before it listened, or whose address `status` learns
    # later (ObservedStatus.url; the control plane then records it here).
    url: Optional[str]
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Handle":
        return cls(data["kind"], data["deployment_id"], data["replica_id"], data.get("url"), dict(data.get("data") or {}))


# Handle.data keys every runtime that starts development replicas fills in.
CONTROL_URL = "control_url"  # http://host:port of the replica's control API, reachable from the control plane
CONTROL_TOKEN_FILE = "control_token_file"  # a 0600 file on the control plane's machine holding its token


def control_token(handle: "Handle") -> Optional[str]:
    """The development replica's control token (None: not a development replica, or gone)."""
    path = handle.data.get(CONTROL_TOKEN_FILE)
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_control_token(directory: Path) -> tuple[str, Path]:
    """A fresh random token in `directory`/control_token (0600) -> (token, path)."""
    token = _random.token_urlsafe(32)
    path = directory / "control_token"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as output:
        output.write(token)
    return token, path


@dataclass(frozen=True)
class ObservedStatus:
    phase: str  # one of OBSERVED_PHASES
    summary: Optional[str] = None  # on FAILED: the server's one line
    traceback: Optional[str] = None
    exit_code: Optional[int] = None  # on GONE, when known
    tree_hash: Optional[str] = None  # a development replica's: the tree it serves now
    # Where the replica answers, when `start` could not know it yet (a Kubernetes pod's IP is
    # assigned after start): the control plane records it in the replica's Handle.url. None:
    # the Handle's url stands.
    url: Optional[str] = None
    # The same for a development replica's control API (a pod's, known once it has an IP): the
    # control plane records it in Handle.data[CONTROL_URL]. None: the Handle's data stands.
    control_url: Optional[str] = None

    @property
    def is_ready(self) -> bool:
        return self.phase == READY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogLine:
    at: datetime  # when the line was written (UTC, aware)
    text: str  # without its newline


class Runtime(Protocol):
    kind: str
    # Whether `start` honours ReplicaSpec.development (a private copy of `tree_dir`, the
    # control API in the Handle's data). Without it every patch of a development deployment
    # is synced by a rebuild.
    development_replicas: bool

    def prepare(self, request: BuildRequest) -> Artifact:
        """Build what replicas of this deployment run from; the log goes to `request.build_log`.
        Raises BuildError with a one-line cause."""
        ...

    def start(self, spec: ReplicaSpec) -> Handle:
        """Start a replica that outlives the caller; returns once it runs (poll `status`)."""
        ...

    def status(self, handle: Handle) -> ObservedStatus: ...

    def stop(self, handle: Handle, grace: float = protocol.STOP_GRACE_SECONDS) -> None:
        """SIGTERM (in-flight requests drain), SIGKILL after `grace`; idempotent. The log stays."""
        ...

    def list(self) -> list[Handle]:
        """Every replica this runtime started under its data dir and not stopped, also those a
        previous control plane started; `status` tells which still run."""
        ...

    def logs(self, handle: Handle, since: Optional[datetime] = None, follow: bool = False) -> Iterator[LogLine]: ...

    def remove_artifact(self, artifact: Artifact) -> None: ...


# What a ready feed yields: deployment id -> {ready replica URL: a name for it}. The name is for
# a replica the control plane has not recorded yet (a Kubernetes pod's name); the control plane
# shows its own replica id for a URL it knows.
ReadyReplicas = Mapping[str, Mapping[str, str]]


class ReadyFeed(Protocol):
    """An optional capability: a runtime that learns by itself, as it happens, which replicas
    take traffic (Kubernetes: the EndpointSlices of each deployment's headless Service).

    The control plane checks for it generically (`ready_feed(runtime)`), never by kind. When
    a runtime offers it, the gateway routes a deployment's requests only to the URLs in the
    feed's ready set, as soon as the feed says so, instead of waiting for the reconciler's
    next `status` of each replica: a replica that stops being ready leaves the rotation at
    once, and one that becomes ready takes traffic (and releases parked requests) at once.
    """

    def watch_ready(self) -> AsyncGenerator[ReadyReplicas, None]:
        """The whole picture first, then again each time it changes (every deployment each
        time; one missing has no ready replica). Runs on the control plane's event loop, so it
        must not block. A transient loss of its source is the feed's to retry (keeping the
        last picture meanwhile); raising (e.g. not allowed to watch) or ending makes the
        control plane fall back to the reconciler's view of ready replicas."""
        ...


def ready_feed(runtime: object) -> Optional[ReadyFeed]:
    """The runtime's ready feed, when it offers one (process and Docker runtimes do not)."""
    return runtime if callable(getattr(runtime, "watch_ready", None)) else None  # type: ignore[return-value]
