"""The development deployment's lifecycle, as the reconciler drives it (docs/live-reload.md).

Scale to zero and wake are shared with published deployments (docs/autoscaling.md): their
autoscaler decides when they want no replica, and a request wakes them the same way.

Scale to zero: one that is ACTIVE (or UNHEALTHY) and had no request and no wake for
`idle_seconds` becomes SCALED_TO_ZERO (its desired state stays active); the reconciler stops
its replica once the gateway routes by that (so no request is sent to a replica being
stopped). The idle clock lives in memory and costs the gateway nothing: it is reset when the
gateway's request counter or in-flight gauge for the deployment moved since the last look,
and by the wake route; a control plane restart resets it, which only delays a scale-down.

Wake: a request to a deployment scaled to zero asks for one (`request_wake`): the next tick
moves it to WAKING_UP and starts its replica while the request parks, then ACTIVE. The
status is in the store, so a deployment scaled to zero stays so across a crash and wakes on
the next request.

Start tree: a development replica starts at the deployment's staged tree (unless refused),
else its running tree, materialised from the stored trees; a replica reporting the staged
tree moves the patch points (`at_staged_tree`).

Nothing here runs on its own: the reconciler's tick calls it, under the tick's lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Optional

from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.runtimes.base import FAILED, Artifact, ObservedStatus, ReplicaSpec, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Store, states
from truss_cli.controlplane.trees import Trees

# What a development deployment may be scaled to zero from.
IDLE_CANDIDATES = frozenset({states.ACTIVE, states.UNHEALTHY})
DEV_IDLE_SECONDS = 900.0  # Baseten's default scale-down delay


class DevelopmentLifecycle:
    def __init__(self, store: Store, runtime: Runtime, trees: Optional[Trees], idle_seconds: float) -> None:
        self.store = store
        self.runtime = runtime
        self.trees = trees  # development replicas start at a stored tree (their patch point)
        self.idle_seconds = idle_seconds
        # The idle clock: deployment id -> monotonic time of its last request, wake or start.
        # Written on the loop's thread and by the tick; single-key reads and writes only.
        self._last_used: dict[str, float] = {}
        self._wake_requests: set[str] = set()  # ids a request or the wake route asked to wake
        # id -> why it wakes, for its log, when not a request (raising min_replica: min_replica_wake.py)
        self._wake_reasons: dict[str, str] = {}
        # deployment id -> monotonic time the wake route last reset its idle clock while awake
        # (`truss watch` calls it every 60 s): how the Development tab tells it is kept awake.
        self._wake_calls: dict[str, float] = {}
        self._wake_lock = threading.Lock()

    # -- the idle clock -------------------------------------------------------------------

    def touch(self, deployment_id: str, now: Optional[float] = None) -> None:
        """Reset the deployment's idle clock (a request, the wake route)."""
        self._last_used[deployment_id] = time.monotonic() if now is None else now

    def wake_called(self, deployment_id: str) -> None:
        """The wake route reset an awake deployment's idle clock."""
        now = time.monotonic()
        self._last_used[deployment_id] = now
        self._wake_calls[deployment_id] = now

    def idle_clock(self, deployment_id: str) -> tuple[Optional[float], Optional[float]]:
        """(seconds until it scales to zero if nothing uses it, seconds since the wake route
        last reset its clock), each None when unknown (not serving since this control plane
        started, never woken by the route). Read by the dashboard from another thread."""
        now = time.monotonic()
        last_used, woken = self._last_used.get(deployment_id), self._wake_calls.get(deployment_id)
        left = None if last_used is None else max(0.0, self.idle_seconds - (now - last_used))
        return left, None if woken is None else now - woken

    def request_wake(self, deployment_id: str, reason: str = "a request arrived") -> None:
        """A request or the wake route found the deployment scaled to zero (or its min_replica
        was raised, `reason`): the next tick wakes it."""
        self.touch(deployment_id)
        with self._wake_lock:
            self._wake_requests.add(deployment_id)
            self._wake_reasons[deployment_id] = reason

    def take_wake_requests(self) -> set[str]:
        with self._wake_lock:
            wake_requests, self._wake_requests = self._wake_requests, set()
        return wake_requests

    def forget_except(self, live: set[str]) -> None:
        """Drop the idle clocks of deleted deployments."""
        for deployment_id in list(self._last_used):
            if deployment_id not in live:
                self._last_used.pop(deployment_id, None)
                self._wake_calls.pop(deployment_id, None)
        with self._wake_lock:
            for deployment_id in set(self._wake_reasons) - live:
                self._wake_reasons.pop(deployment_id, None)

    def idle(self, deployment: Deployment, now: float) -> bool:
        """A development deployment serving with no request or wake for idle_seconds. The
        clock starts when it starts serving, not when it was pushed (a long build is no idleness)."""
        if not deployment.is_development:
            return False
        if deployment.status not in IDLE_CANDIDATES:
            self._last_used[deployment.id] = now
            return False
        last = self._last_used.setdefault(deployment.id, now)
        return now - last >= self.idle_seconds

    # -- scale to zero and wake -----------------------------------------------------------

    def scale_to_zero(self, deployment: Deployment, reason: Optional[str] = None) -> Optional[Deployment]:
        """Store SCALED_TO_ZERO -> the deployment as it is now; None when it changed meanwhile
        (the caller re-reads it; the next tick sees it). The caller retires its replicas.
        Published deployments go the same way when the autoscaler wants none (`reason`)."""
        if not self.store.deployments.scale_to_zero(deployment.id):
            return None
        reason = reason or f"no request for {self.idle_seconds:g} s"
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"scaled to zero: {reason}; the next request wakes it")
        return dataclasses.replace(deployment, status=states.SCALED_TO_ZERO, status_detail=None)

    def wake_up(self, deployment: Deployment) -> Deployment:
        with self._wake_lock:
            reason = self._wake_reasons.pop(deployment.id, "a request arrived")
        if not self.store.deployments.wake(deployment.id):
            return deployment
        self._last_used[deployment.id] = time.monotonic()
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"waking up: {reason}")
        return dataclasses.replace(deployment, status=states.WAKING_UP, status_detail=None)

    # -- patch points ---------------------------------------------------------------------

    def at_staged_tree(self, deployment: Deployment, observed: ObservedStatus) -> Deployment:
        """A replica reports the staged tree: it started there (a wake after a deferred
        sync), or a sync finished while the control plane was down. Serving it, the staged
        tree runs; failing on it, new replicas start at the running tree until the next patch."""
        tree_hash = observed.tree_hash or ""
        if observed.is_ready:
            self.store.patch_points.advance(deployment.id, tree_hash)
        elif observed.phase == FAILED:
            self.store.patch_points.refused(deployment.id, tree_hash)
        else:
            return deployment
        return self.store.deployments.get_by_id(deployment.id)

    def replica_spec(self, deployment: Deployment, artifact: Artifact, secrets: dict[str, str]) -> Optional[ReplicaSpec]:
        """A development replica at the deployment's start tree; None when it starts as a
        published one would (not development, no stored tree, or a runtime without them)."""
        tree_hash = deployment.start_tree
        if not (deployment.is_development and self.trees is not None and tree_hash
                and getattr(self.runtime, "development_replicas", False)):
            return None
        tree_dir = self.trees.tree(tree_hash)
        return ReplicaSpec(deployment.id, artifact, secrets=secrets, development=True,
                           tree_dir=str(tree_dir), tree_hash=tree_hash)
