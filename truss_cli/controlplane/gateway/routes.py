"""What a resolver answers for (model, target): the types the gateway and the control plane share.

The gateway asks `resolve(model_id, target)` once per request, so a resolver answers from
memory (the control plane keeps a routing table the reconciler updates), never from the
database. A target is the path's own words: `production`, `development`, `deployment/<id>`
or `environments/<name>`.

One of four answers:
- `Route`: the target's deployments, each with a weight (a canary or a promotion in
  progress splits traffic) and the URLs of its replicas that pass readiness now.
- `UnknownTarget`: 404; `detail` says what exists (the resolver knows, the gateway does not),
  or, with `error_code` DEPLOYMENT_INACTIVE, that the target's deployment is inactive and how
  to activate it.
- `NotReady`: 503 with `Retry-After`; nothing will be ready soon enough to wait for.
- `Parked`: the target is waking up or scaling up; the gateway waits on `ready` (at most
  `timeout` seconds), then resolves again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional, Protocol, Sequence, Union


@dataclass(frozen=True)
class Replica:
    """One ready replica. `id` is the runtime's replica id: every answer it gives carries it in
    x-truss-replica-id (set by the gateway, replacing the server's own, which on Kubernetes is
    the pod's name)."""

    id: str
    url: str  # http://host:port, no trailing slash


@dataclass(frozen=True)
class DeploymentRoute:
    deployment_id: str
    replicas: Sequence[Replica]
    weight: float = 1.0
    # Requests one replica takes at once (autoscaling's concurrency_target); 0: no cap.
    concurrency: int = 0


@dataclass(frozen=True)
class Route:
    deployments: Sequence[DeploymentRoute]


@dataclass(frozen=True)
class UnknownTarget:
    detail: str
    error_code: str = "NOT_FOUND"
    hint: Optional[str] = None  # what to do about it, when there is something


@dataclass(frozen=True)
class NotReady:
    detail: str
    retry_after_seconds: int = 5
    error_code: str = "NO_REPLICA_READY"


@dataclass(frozen=True)
class Parked:
    """Wait for `ready` (set when a replica passes readiness), then resolve again."""

    ready: Callable[[], Awaitable[object]]  # a fresh awaitable per waiting request
    timeout_seconds: float
    detail: str = "the deployment is starting"
    retry_after_seconds: int = 5
    # The deployment the request waits for (of a split, the starting one with the most weight):
    # the gateway counts the waiting request as its load, which the autoscaler reads.
    deployment_id: Optional[str] = None


Resolution = Union[Route, UnknownTarget, NotReady, Parked]


class Resolver(Protocol):
    async def resolve(self, model_id: str, target: str) -> Resolution: ...


@dataclass(frozen=True)
class Denial:
    """An authorizer's refusal: 401 (no or unknown key) or 403 (a key without the scope)."""

    status: int
    detail: str
    error_code: str = field(default="")

    def code(self) -> str:
        return self.error_code or ("UNAUTHENTICATED" if self.status == 401 else "FORBIDDEN")


class Authorizer(Protocol):
    async def __call__(self, authorization: Optional[str], model_id: str) -> Optional[Denial]:
        """None lets the request through. Called before anything else, with the raw header."""
        ...
