"""Waiting for a deployment to reach a status (ACTIVE after a push, INACTIVE after a deactivate).

The control plane offers no status stream, so the client polls: every 0.2 s at first and
after each change of status (a user waiting at a prompt notices a second), slowing down to
once a second while nothing changes (a build takes minutes; no need to ask five times a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from truss_cli.client.api import Api
from truss_cli.errors import TrussError

FINAL_FAILURES = ("BUILD_FAILED", "DEPLOY_FAILED")
FIRST_POLL_SECONDS = 0.2
LAST_POLL_SECONDS = 1.0
_BACKOFF = 1.5


class DeploymentFailed(TrussError):
    """The deployment reached BUILD_FAILED or DEPLOY_FAILED (its cause is the message)."""

    def __init__(self, message: str, hint: str | None, deployment: dict[str, Any]):
        super().__init__(message, hint)
        self.deployment = deployment


def poll_intervals(first: float = FIRST_POLL_SECONDS, last: float = LAST_POLL_SECONDS) -> Iterator[float]:
    """first, first * 1.5, ... up to `last`, then `last` for ever."""
    pause = first
    while True:
        yield pause
        pause = min(pause * _BACKOFF, last)


def wait_for_status(
    api: Api,
    model_ref: str,
    deployment_ref: str,
    until: Collection[str] = ("ACTIVE",),
    failures: Collection[str] = FINAL_FAILURES,
    timeout_seconds: float | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll until the deployment's status is one of `until` (returned) or of `failures`
    (DeploymentFailed with the cause); `on_status` sees each new status once."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    last = None
    pauses = poll_intervals()
    while True:
        deployment = api.deployment(model_ref, deployment_ref)
        status = deployment.get("status")
        if status != last:
            pauses = poll_intervals()  # something moves: look again soon
            if on_status is not None:
                on_status(deployment)
        last = status
        if status in until:
            return deployment
        if status in failures:
            name = deployment.get("name") or deployment_ref
            cause = deployment.get("status_detail") or "no cause given"
            raise DeploymentFailed(
                f"deployment {name} {status}: {cause}",
                f"see its log: truss logs --model {model_ref} --deployment {deployment.get('id') or deployment_ref}",
                deployment,
            )
        if deadline is not None and time.monotonic() >= deadline:
            reference = deployment.get("id") or deployment_ref
            raise TrussError(
                f"deployment {reference} is still {status} after {timeout_seconds:g}s",
                hint=f"it keeps going on the remote; follow it with `truss logs --model {model_ref} --deployment {reference} --tail`",
            )
        time.sleep(next(pauses))
