"""The reconciler: derives actions from (desired, observed) and nothing else.

Every tick it reads the deployments that should run from the store, asks the runtime what
each recorded replica is doing, and acts: start missing replicas, restart dead ones (with
exponential backoff, 1 s -> 60 s), mark DEPLOY_FAILED when a deployment never came up,
UNHEALTHY when an active one has no ready replica, and feeds the gateway's routing table.
It keeps no state that matters across a crash (only backoff timers), so a control plane
killed between two steps repairs the rest on its next tick.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.gateway import Replica as Upstream
from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.runtimes.base import FAILED, GONE, Artifact, Handle, ReplicaSpec, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Replica, Store
from truss_cli.controlplane.store import states

logger = logging.getLogger("truss.controlplane.reconciler")

RUNNING_STATUSES = frozenset({states.DEPLOYING, states.LOADING_MODEL, states.ACTIVE, states.UNHEALTHY})
NOT_YET_ACTIVE = frozenset({states.DEPLOYING, states.LOADING_MODEL})
STOPPED = "stopped"  # a replica row kept for its logs (its deployment failed)
_TICK_SECONDS = 0.5
_BACKOFF_FIRST, _BACKOFF_MAX = 1.0, 60.0


@dataclass
class Routing:
    """What one tick found: each model's targets and each deployment's ready replicas."""

    models: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    replicas: dict[str, tuple[list[Upstream], bool]] = field(default_factory=dict)  # id -> (ready, starting)


class Reconciler:
    def __init__(self, store: Store, runtime: Runtime, table: RoutingTable) -> None:
        self.store = store
        self.runtime = runtime
        self.table = table
        self._next_restart: dict[str, float] = {}  # replica row id -> monotonic time
        self._wake = asyncio.Event()
        self._lock = threading.Lock()  # one tick at a time (the API's delete also stops replicas)
        # Set by stop_all: the control plane is going down with its replicas, so no later tick
        # may start them again (the next start brings active deployments back).
        self._halted = False

    def wake(self) -> None:
        """Something changed (a build finished, a deployment was deleted): tick now."""
        self._wake.set()

    # -- start ----------------------------------------------------------------------------

    def adopt(self) -> None:
        """At start: keep the replicas rows know (never restarting a ready one) and stop the
        ones no row knows (started by a control plane that died before recording them)."""
        known = {r.handle.get("replica_id") for r in self.store.replicas.list()}
        for handle in self.runtime.list():
            if handle.replica_id not in known:
                logger.info("stopping replica %s: no deployment knows it", handle.replica_id)
                self.runtime.stop(handle)

    async def run(self) -> None:
        while True:
            try:
                routing = await asyncio.to_thread(self.tick)
                self._publish(routing)
            except Exception:
                logger.exception("reconciler tick failed; trying again")
            try:
                await asyncio.wait_for(self._wake.wait(), _TICK_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # -- one tick (a worker thread) -------------------------------------------------------

    def tick(self) -> Routing:
        with self._lock:
            routing = Routing()
            deployments = self.store.deployments.list()
            for deployment in deployments:
                ready: list[Upstream] = []
                if (
                    not self._halted
                    and deployment.status in RUNNING_STATUSES
                    and deployment.desired_state == states.DESIRED_ACTIVE
                ):
                    try:
                        deployment, ready = self._reconcile(deployment)
                    except Exception:
                        logger.exception("reconciling deployment %s failed", deployment.id)
                routing.replicas[deployment.id] = (ready, deployment.status in NOT_YET_ACTIVE)
            for model in self.store.models.list():
                targets: dict[str, list[tuple[str, float]]] = {}
                for deployment in deployments:
                    if deployment.model_id != model.id:
                        continue
                    targets[f"deployment/{deployment.id}"] = [(deployment.id, 1.0)]
                    if deployment.is_production:
                        targets["production"] = [(deployment.id, 1.0)]
                    if deployment.is_development:
                        targets["development"] = [(deployment.id, 1.0)]
                routing.models[model.id] = targets
            return routing

    def _reconcile(self, deployment: Deployment) -> tuple[Deployment, list[Upstream]]:
        rows = [r for r in self.store.replicas.list(deployment.id) if r.phase != STOPPED]
        ready: list[Upstream] = []
        loading = False
        for row in rows:
            handle = Handle.from_dict(dict(row.handle))
            observed = self.runtime.status(handle)
            if observed.is_ready and handle.url:
                ready.append(Upstream(handle.replica_id, handle.url))
            elif observed.phase in (FAILED, GONE):
                cause = observed.summary or _exit_cause(observed.exit_code)
                if deployment.status in NOT_YET_ACTIVE:
                    # It never came up: restarting would fail the same way. Stop, keep logs, say why.
                    return self._fail(deployment, rows, cause), []
                self._restart(deployment, row, handle, cause)
                continue
            else:
                loading = True
            if row.phase != observed.phase and observed.phase in states.REPLICA_PHASES:
                self.store.replicas.set_phase(row.id, observed.phase)
        for _ in range(deployment.desired_replicas - len(rows)):
            self._start(deployment)
            loading = True
        status = _status(deployment, bool(ready), loading)
        if status != deployment.status:
            deployment = self.store.deployments.set_status(deployment.id, status)
            if status == states.ACTIVE and deployment.config.get("promote_when_active") and not deployment.is_production:
                deployment = self.store.deployments.promote(deployment.id)
        return deployment, ready

    def _spec(self, deployment: Deployment) -> ReplicaSpec:
        artifact = Artifact.from_dict(dict(deployment.build_artifact or {}))
        names = list(deployment.config.get("secret_names") or [])
        values, missing = self.store.secrets.resolve(names)
        if missing:
            with LogFile(build_log_path(self.store, deployment.id)) as log:
                for name in missing:
                    log(f"warning: secret {name} is not set on this remote: truss secrets set {name}")
        return ReplicaSpec(deployment.id, artifact, secrets={n: v.reveal() for n, v in values.items()})

    def _start(self, deployment: Deployment) -> None:
        handle = self.runtime.start(self._spec(deployment))
        # Recorded at once: a crash now leaves a row, and the replica is re-adopted.
        self.store.replicas.record(deployment.id, self.runtime.kind, handle.to_dict())

    def _restart(self, deployment: Deployment, row: Replica, handle: Handle, cause: str) -> None:
        now = time.monotonic()
        due = self._next_restart.get(row.id)
        if due is None:
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** min(row.restarts, 10))
            self._next_restart[row.id] = now + delay
            with LogFile(build_log_path(self.store, deployment.id)) as log:
                log(f"replica {handle.replica_id} is down ({cause}); restarting in {delay:.0f} s")
            return
        if now < due:
            return
        del self._next_restart[row.id]
        self.runtime.stop(handle, 0)
        new = self.runtime.start(self._spec(deployment))
        self.store.replicas.restarted(row.id, new.to_dict())

    def _fail(self, deployment: Deployment, rows: list[Replica], cause: str) -> Deployment:
        for row in rows:
            self.runtime.stop(Handle.from_dict(dict(row.handle)), 0)
            self.store.replicas.set_phase(row.id, STOPPED)
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"deploy failed: {cause}")
        return self.store.deployments.set_status(deployment.id, states.DEPLOY_FAILED, cause)

    def delete_deployments(self, deployment_ids: list[str], forget: "Callable[[], object]") -> None:
        """Stop the deployments' replicas, then `forget` their rows (API thread). Under the
        tick's lock: a tick between the two would see a deployment without replicas and
        start one for it."""
        with self._lock:
            for deployment_id in deployment_ids:
                for row in self.store.replicas.list(deployment_id):
                    self.runtime.stop(Handle.from_dict(dict(row.handle)))
                    self.store.replicas.remove(row.id)
            forget()

    def stop_all(self) -> None:
        """`POST /v1/server/stop {"stop_replicas": true}`."""
        with self._lock:
            self._halted = True
            for row in self.store.replicas.list():
                self.runtime.stop(Handle.from_dict(dict(row.handle)))
                self.store.replicas.set_phase(row.id, STOPPED)

    # -- the loop's thread ----------------------------------------------------------------

    def _publish(self, routing: Routing) -> None:
        for model_id, targets in routing.models.items():
            self.table.set_model(model_id, targets)
        for model_id in set(self.table._targets) - set(routing.models):  # noqa: SLF001 (deleted models)
            self.table.remove_model(model_id)
        for deployment_id, (ready, starting) in routing.replicas.items():
            self.table.set_replicas(deployment_id, ready, starting)


def _status(deployment: Deployment, any_ready: bool, loading: bool) -> str:
    if any_ready:
        return states.ACTIVE
    if deployment.status in (states.ACTIVE, states.UNHEALTHY):
        return states.UNHEALTHY
    return states.LOADING_MODEL if loading else states.DEPLOYING


def _exit_cause(exit_code: int | None) -> str:
    return f"the replica exited (code {exit_code})" if exit_code is not None else "the replica is gone"
