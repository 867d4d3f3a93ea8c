"""The reconciler: derives actions from (desired, observed) and nothing else.

Every tick it reads the deployments from the store, asks the runtime what each recorded
replica is doing, and acts: start missing replicas, restart dead ones (with exponential
backoff, 1 s -> 60 s), mark DEPLOY_FAILED when a deployment never came up, UNHEALTHY when an
active one has no ready replica, stop the replicas of a deployment meant to be inactive
(DEACTIVATING -> INACTIVE), and feeds the gateway's routing table. The graceful stops run in
worker threads (`retirement.Retirement`), so no tick waits for one. It keeps no state that
matters across a crash (backoff timers, usage not yet flushed), so a control plane killed
between two steps repairs the rest on its next tick: a deployment left DEACTIVATING is
stopped again and becomes INACTIVE.

It also counts usage (`usage_meter.UsageMeter`): the replica-seconds of the replicas it sees
running, and the requests the gateway served per deployment, flushed to the store every few
seconds and at shutdown.

Development deployments scale to zero, wake and start at their patch point: the tick calls
`development.DevelopmentLifecycle` for those steps.

Published deployments follow the load (issue 11, docs/autoscaling.md): each tick, an ACTIVE
one's desired replica count comes from a rollout's override (`rollout_replicas`) or else from
the autoscaler (`autoscaling_driver.AutoscalingDriver`: `autoscaler.decide` on the gateway's
load samples and the deployment's effective autoscaling settings), and the tick converges to
it: missing replicas start, extra ones retire gracefully (not-ready ones first; unrouted by
the next publish, their in-flight requests finished at the gateway, then stopped). A desired
count of 0 scales it to zero (SCALED_TO_ZERO, no replica); a request wakes it exactly as it
wakes a development one.

Environments: the tick hands an empty production to the next in line and promotes a
deployment pushed with `--promote` once it is ACTIVE (`environment_steps`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Optional

from truss_cli.controlplane import autoscaler
from truss_cli.controlplane.autoscaling_driver import AutoscalingDriver
from truss_cli.controlplane.autoscaling_settings import AutoscalingSettings
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.development import DEV_IDLE_SECONDS, DevelopmentLifecycle
from truss_cli.controlplane.environment_steps import hand_over_production, promote_when_active
from truss_cli.controlplane.gateway import Replica as Upstream
from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.retirement import STOPPED, Retirement
from truss_cli.controlplane.rollout_machine import RAMPING_DOWN
from truss_cli.controlplane.runtimes.base import CONTROL_URL, FAILED, GONE, Artifact, Handle, ObservedStatus, ReplicaSpec, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Removed, Replica, Store
from truss_cli.controlplane.store import states
from truss_cli.controlplane.store.deployments import takes_production
from truss_cli.controlplane.targets import build_targets
from truss_cli.controlplane.tick_routing import Routing, inactive_detail, replica_addresses
from truss_cli.controlplane.trees import Trees
from truss_cli.controlplane.usage_meter import UsageMeter

logger = logging.getLogger("truss.controlplane.reconciler")

RUNNING_STATUSES = frozenset({states.DEPLOYING, states.LOADING_MODEL, states.ACTIVE, states.UNHEALTHY, states.WAKING_UP})
NOT_YET_ACTIVE = frozenset({states.DEPLOYING, states.LOADING_MODEL})
# Requests for these park until a replica is ready (or the park timeout) instead of failing.
PARKING = NOT_YET_ACTIVE | {states.WAKING_UP}
# A development deployment meant to be active, yet with no replica to run: a replica row left
# over (a rebuild, a crash in the middle of a scale-down) is stopped. (Published deployments
# are looked up only when scaled to zero: they never build in place.)
NOTHING_RUNS = frozenset({states.BUILDING, states.BUILD_FAILED, states.SCALED_TO_ZERO})
_TICK_SECONDS = 0.5
# While requests are parked and a deployment is coming up (waking, starting), tick this often:
# the replica's readiness is seen by a tick, and a cold start's answer waits on it. (Not for
# every start: a model loading for minutes with nobody waiting is polled at the usual pace.)
_STARTING_TICK_SECONDS = 0.05
_BACKOFF_FIRST, _BACKOFF_MAX = 1.0, 60.0


class Reconciler:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        table: RoutingTable,
        served_requests: Optional[Callable[[], Mapping[str, int]]] = None,
        busy_deployments: Optional[Callable[[], Iterable[str]]] = None,
        dev_idle_seconds: float = DEV_IDLE_SECONDS,
        trees: Optional[Trees] = None,
        load: Optional[Callable[[], Mapping[str, float]]] = None,
        in_flight_at: Optional[Callable[[str], int]] = None,
        rollout_replicas: Callable[[str], Optional[int]] = lambda _: None,
        before_tick: Callable[[], None] = lambda: None,
        parked: Optional[Callable[[], bool]] = None,
        scale_down_step_seconds: float = autoscaler.SCALE_DOWN_STEP_SECONDS,
    ) -> None:
        """`served_requests`: the gateway's requests per deployment id since it started, and
        `busy_deployments`: the ids with a request in flight now (both read on the event
        loop's thread, which is the one that updates them). `dev_idle_seconds`: how long a
        development deployment may go without a request or wake before it scales to zero.
        `load`: the gateway's mean requests in flight or waiting per deployment since the last
        call (the loop's thread); `in_flight_at(url)`: the gateway's requests outstanding at a
        replica (read from a retiring thread: one dict lookup); `rollout_replicas(id)`: a
        rollout's replica count for a deployment it drives, None to leave it to the autoscaler;
        `before_tick()`: the rollouts' step, run first in every tick (in the tick's thread and
        lock), so the replica counts and traffic shares this tick uses are the ones it wrote;
        `parked()`: whether the gateway holds requests waiting for a target to come up."""
        self.store = store
        self.runtime = runtime
        self.table = table
        self._served_requests = served_requests
        self._busy_deployments = busy_deployments
        self.development = DevelopmentLifecycle(store, runtime, trees, dev_idle_seconds)
        self.rollout_replicas = rollout_replicas
        self._before_tick = before_tick
        self._parked = parked
        # Published deployments' desired replica counts: a rollout's, else the autoscaler's.
        self.autoscaling = AutoscalingDriver(store, load, rollout_replicas, scale_down_step_seconds)
        self._next_restart: dict[str, float] = {}  # replica row id -> monotonic time
        # Graceful stops in worker threads: retired rows (scale-down, leftovers) once the
        # gateway no longer routes to them, and deactivations.
        self.retirement = Retirement(store, runtime, in_flight_at,
                                     stopped=lambda row_id: self._next_restart.pop(row_id, None),
                                     done=self._wake_from_thread)
        self._wake = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()  # one tick at a time (deletes take it too)
        # Set by stop_all: the control plane is going down with its replicas, so no later tick
        # may start them again (the next start brings active deployments back).
        self._halted = False
        self._seq = 0
        self._published = 0
        self._starting = False  # the last published routing has a deployment coming up with no replica ready
        self.usage = UsageMeter(store)
        self._last_tick: Optional[float] = None
        # Set when the gateway routes by the runtime's ready feed: each tick then also publishes
        # the replicas' addresses and the retiring ones (tick_routing.replica_addresses).
        self.publish_addresses = False

    def wake(self) -> None:
        """Something changed (a build finished, a deployment was deleted): tick now."""
        self._wake.set()

    def touch(self, deployment_id: str) -> None:
        """Reset the deployment's idle clock (the wake route; the loop's thread)."""
        self.development.wake_called(deployment_id)

    def request_wake(self, deployment_id: str) -> None:
        """A request or the wake route found the deployment scaled to zero: wake it on the
        next tick, which is now (the loop's thread)."""
        self.development.request_wake(deployment_id)
        self._wake.set()

    def _wake_from_thread(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

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
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                self.sample_load()
                await self.refresh()
                self.count_requests()
                if self.usage.flush_due():
                    await asyncio.to_thread(self.flush_usage)
            except Exception:
                logger.exception("reconciler tick failed; trying again")
            try:
                hurry = self._starting and (self._parked is None or self._parked())
                await asyncio.wait_for(self._wake.wait(), _STARTING_TICK_SECONDS if hurry else _TICK_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def refresh(self) -> None:
        """Tick now and publish the routing it found (the API calls this after a change, so
        the gateway answers by the new state when the response is sent)."""
        self._loop = asyncio.get_running_loop()
        self._publish(await asyncio.to_thread(self.tick))

    # -- one tick (a worker thread) -------------------------------------------------------

    def tick(self) -> Routing:
        with self._lock:
            self._seq += 1
            routing = Routing(seq=self._seq)
            now = time.monotonic()
            elapsed = 0.0 if self._last_tick is None else now - self._last_tick
            self._last_tick = now
            if not self._halted:
                try:
                    self._before_tick()
                except Exception:  # a rollout's failure must not stop reconciling the rest
                    logger.exception("the rollouts' step failed; the next tick tries again")
            wake_requests = self.development.take_wake_requests()
            models = {model.id: model for model in self.store.models.list()}
            deployments = self.store.deployments.list()
            scaling_inputs = self.store.autoscaling.all_inputs()
            # Each deployment as this tick leaves it: the targets below are built from these,
            # so the routing it publishes already follows what it changed (one it just marked
            # DEPLOY_FAILED no longer stands in for production: ENVIRONMENT_EMPTY says why,
            # not a 503 until the next tick).
            after: list[Deployment] = []
            for deployment in deployments:
                ready: list[Upstream] = []
                running = 0
                if deployment.desired_state == states.DESIRED_INACTIVE:
                    routing.inactive[deployment.id] = inactive_detail(deployment, models.get(deployment.model_id))
                    if not self._halted and deployment.status != states.INACTIVE:
                        self.retirement.deactivate(deployment.id)
                elif not self._halted:
                    try:
                        settings = None if deployment.is_development else self.autoscaling.settings(deployment, scaling_inputs)
                        if settings is not None:
                            routing.concurrency[deployment.id] = settings.concurrency_target
                        if deployment.status == states.SCALED_TO_ZERO and deployment.id in wake_requests:
                            deployment = self._wake_up(deployment, settings)
                        elif deployment.status == states.SCALED_TO_ZERO and (self.rollout_replicas(deployment.id) or 0) > 0:
                            deployment = self._wake_for_rollout(deployment)
                        if deployment.status in RUNNING_STATUSES:
                            if settings is not None:
                                deployment = self.autoscaling.desired(deployment, settings, now)
                            if self.development.idle(deployment, now):
                                deployment = self._scale_to_zero(deployment, routing)
                            elif settings is not None and deployment.desired_replicas == 0:
                                deployment = self._scale_to_zero(
                                    deployment, routing,
                                    f"no request for {settings.scale_down_delay} s (scale_down_delay)")
                            else:
                                deployment, ready, running = self._reconcile(deployment, routing.seq)
                        elif deployment.status in NOTHING_RUNS and (
                                deployment.is_development or deployment.status == states.SCALED_TO_ZERO):
                            self.retirement.queue(routing.seq, self._leftovers(deployment))
                    except Exception:
                        logger.exception("reconciling deployment %s failed", deployment.id)
                routing.replicas[deployment.id] = (ready, deployment.status in PARKING)
                if deployment.status == states.SCALED_TO_ZERO:
                    routing.asleep.add(deployment.id)
                model = models.get(deployment.model_id)
                self.usage.count(deployment, model.name if model else "", replica_seconds=running * elapsed)
                after.append(deployment)
            deployments = after
            live = {deployment.id for deployment in deployments}
            self.usage.saw(live)
            self.development.forget_except(live)  # deleted deployments' idle clocks
            self.autoscaling.forget_except(live)
            environments = self.store.environments.list_all()
            if hand_over_production(self.store, deployments, environments):
                environments = self.store.environments.list_all()
            routing.models = build_targets(models, deployments, environments,
                                           self.store.environments.unfinished_promotions())
            routing.names = {model_id: model.name for model_id, model in models.items()}
            if self.publish_addresses:
                replica_addresses(routing, self.store.replicas.list(), self._retiring)
            return routing

    # -- scale to zero (an idle development deployment; a published one at desired 0) ----

    def _scale_to_zero(self, deployment: Deployment, routing: Routing, reason: Optional[str] = None) -> Deployment:
        asleep = self.development.scale_to_zero(deployment, reason)
        if asleep is None:
            return self.store.deployments.get_by_id(deployment.id)  # changed meanwhile; the next tick sees it
        self.retirement.queue(routing.seq, self._leftovers(deployment))
        return asleep

    def _leftovers(self, deployment: Deployment) -> list[Replica]:
        """Its replica rows still running (not stopped, not being stopped)."""
        return [r for r in self.store.replicas.list(deployment.id) if r.phase != STOPPED and r.id not in self._retiring]

    @property
    def _retiring(self) -> set[str]:
        """The replica rows being retired (retirement.py): no tick counts them or routes to them."""
        return self.retirement.retiring

    # -- published deployments: load samples and waking (the count: autoscaling_driver.py) --

    def sample_load(self) -> None:
        """One load sample per deployment the last tick saw, from the gateway (the loop's thread)."""
        self.autoscaling.sample(self.usage.live())

    def _wake_up(self, deployment: Deployment, settings: Optional[AutoscalingSettings]) -> Deployment:
        """A request found it at zero: WAKING_UP with one replica (min_replica when higher)."""
        woken = self.development.wake_up(deployment)
        if settings is None or woken.status != states.WAKING_UP:
            return woken
        self.autoscaling.woke(deployment.id)
        return self.store.deployments.set_desired(deployment.id, replicas=max(1, settings.min_replica))

    def _wake_for_rollout(self, deployment: Deployment) -> Deployment:
        """A promotion wants replicas of a deployment at zero that no request would wake: its
        candidate (rolling back to the deployment an earlier promotion scaled to zero has no
        share of the traffic until its replicas are READY), or the previous one while a cancel
        ramps traffic back to it (the share returns only as its replicas are READY). WAKING_UP;
        its count is the rollout's. A previous deployment at zero during the ramp up stays
        asleep: it had no load, and its share of the traffic wakes it if any comes."""
        promotions = self.store.environments.unfinished_promotions(deployment.model_id).values()
        if not any(p.candidate_deployment_id == deployment.id
                   or (p.previous_deployment_id == deployment.id and p.status == RAMPING_DOWN) for p in promotions):
            return deployment
        if not self.store.deployments.wake(deployment.id):
            return self.store.deployments.get_by_id(deployment.id)  # changed meanwhile
        self.autoscaling.woke(deployment.id)
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log("waking up: a promotion into an environment wants its replicas")
        return replace(deployment, status=states.WAKING_UP, status_detail=None)

    # -- one active deployment ------------------------------------------------------------

    def _reconcile(self, deployment: Deployment, seq: int) -> tuple[Deployment, list[Upstream], int]:
        """One active deployment: its ready replicas, and how many run (ready or coming up)."""
        rows = [r for r in self.store.replicas.list(deployment.id) if r.phase != STOPPED and r.id not in self._retiring]
        seen = [(row, Handle.from_dict(dict(row.handle))) for row in rows]
        seen = [(row, handle, self.runtime.status(handle)) for row, handle in seen]
        if not deployment.is_development and len(seen) > deployment.desired_replicas:
            seen = self._retire_extra(deployment, seen, seq)
            rows = [row for row, _, _ in seen]
        ready: list[Upstream] = []
        running = 0
        loading = False
        wake_failed: Optional[str] = None
        for row, handle, observed in seen:
            learnt = _learnt(handle, observed)
            if learnt is not handle:
                handle = learnt
                self.store.replicas.set_handle(row.id, handle.to_dict())
            if deployment.is_development and observed.tree_hash and observed.tree_hash == deployment.pending_tree_hash:
                deployment = self.development.at_staged_tree(deployment, observed)
            if observed.is_ready and handle.url:
                ready.append(Upstream(handle.replica_id, handle.url))
                running += 1
            elif observed.phase in (FAILED, GONE):
                cause = observed.summary or _exit_cause(observed.exit_code)
                if deployment.status in NOT_YET_ACTIVE:
                    # It never came up: restarting would fail the same way. Stop, keep logs, say why.
                    return self._fail(deployment, rows, cause), [], 0
                if deployment.status == states.WAKING_UP:
                    wake_failed = cause  # it served before: restart with backoff, say UNHEALTHY meanwhile
                self._restart(deployment, row, handle, cause)
                continue
            else:
                loading = True
                running += 1
            if row.phase != observed.phase and observed.phase in states.REPLICA_PHASES:
                self.store.replicas.set_phase(row.id, observed.phase)
        for _ in range(deployment.desired_replicas - len(rows)):
            self._start(deployment)
            loading = True
        status = _status(deployment, bool(ready), loading)
        if wake_failed is not None and not ready:
            status = states.UNHEALTHY
        if status != deployment.status:
            if status == states.ACTIVE and takes_production(deployment) and not deployment.is_production:
                deployment = self.store.deployments.become_active(deployment.id)
                if deployment.is_production:
                    with LogFile(build_log_path(self.store, deployment.id)) as log:
                        log("serves production: production served nothing yet, and it was first in line")
            else:
                deployment = self.store.deployments.set_status(deployment.id, status, wake_failed if not ready else None)
            if status == states.ACTIVE and deployment.config.get("promote_when_active") and not deployment.is_production:
                deployment = promote_when_active(self.store, deployment)
        return deployment, ready, running

    def _retire_extra(self, deployment: Deployment, seen: list, seq: int) -> list:
        """Scale down: retire the replicas beyond the desired count, those that serve nothing
        first (down, then starting), then the newest ready ones. -> the ones kept."""
        extra = len(seen) - deployment.desired_replicas
        ranked = sorted(range(len(seen)), key=lambda i: (seen[i][2].is_ready, seen[i][2].phase not in (FAILED, GONE), -i))
        leaving = set(ranked[:extra])
        self.retirement.queue(seq, [seen[i][0] for i in sorted(leaving)])
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"scaling down: retiring {extra} replica(s) (desired {deployment.desired_replicas}); "
                "each finishes its requests first")
        return [entry for i, entry in enumerate(seen) if i not in leaving]

    def retire(self, rows: list[Replica]) -> None:
        """Stop these replica rows once the gateway no longer routes to them: from the next
        tick on they are no replicas of their deployment (a replacement took over)."""
        with self._lock:
            self.retirement.queue(self._seq + 1, rows)

    def replica_spec(self, deployment: Deployment) -> ReplicaSpec:
        """What a replica of `deployment` starts from (its artifact, secrets, start tree)."""
        return self._spec(deployment)

    def _spec(self, deployment: Deployment) -> ReplicaSpec:
        artifact = Artifact.from_dict(dict(deployment.build_artifact or {}))
        names = list(deployment.config.get("secret_names") or [])
        values, missing = self.store.secrets.resolve(names)
        if missing:
            with LogFile(build_log_path(self.store, deployment.id)) as log:
                for name in missing:
                    log(f"warning: secret {name} is not set on this remote: truss secrets set {name}")
        secrets = {n: v.reveal() for n, v in values.items()}
        return self.development.replica_spec(deployment, artifact, secrets) or ReplicaSpec(
            deployment.id, artifact, secrets=secrets)

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

    def stop_replicas(self, rows: Iterable[Replica]) -> None:
        """Stop replicas gracefully, all at once (retirement.py; a delete's release calls it)."""
        self.retirement.stop_replicas(rows)

    # -- deletes and shutdown (API threads) -----------------------------------------------

    def remove(self, delete: Callable[[], Removed]) -> Removed:
        """Run a store delete under the tick's lock (a tick between reading the deployments and
        their deletion could start a replica no row knows), then stop what it removed."""
        with self._lock:
            removed = delete()
        for row in removed.replicas:
            self._next_restart.pop(row.id, None)
        return removed

    def stop_all(self) -> None:
        """`POST /v1/server/stop {"stop_replicas": true}`."""
        with self._lock:
            self._halted = True
            for row in self.store.replicas.list():
                self.runtime.stop(Handle.from_dict(dict(row.handle)))
                self.store.replicas.set_phase(row.id, STOPPED)

    # -- usage (usage_meter.py) -----------------------------------------------------------

    def count_requests(self) -> None:
        """Take the gateway's request counts since the last look (the event loop's thread)."""
        if self._served_requests is None:
            return
        totals = dict(self._served_requests())
        now = time.monotonic()
        for deployment_id in self.usage.count_requests(totals):
            self.development.touch(deployment_id, now)  # the idle clock: a request ended since the last look
        if self._busy_deployments is not None:
            for deployment_id in self._busy_deployments():
                self.development.touch(deployment_id, now)  # one in flight (a long stream is no idleness)

    def flush_usage(self) -> None:
        """Add what was counted since the last flush to the store (at shutdown too)."""
        self.usage.flush()

    # -- the loop's thread ----------------------------------------------------------------

    def _publish(self, routing: Routing) -> None:
        if routing.seq < self._published:
            # A newer tick was published already (a refresh overtook the loop's tick); what
            # this one queued for retirement the gateway no longer routes to either.
            self.retirement.begin(self._published)
            return
        self._published = routing.seq
        self._starting = routing.starting()
        routing.apply_to(self.table)
        # Only now that the gateway no longer routes to them.
        self.retirement.begin(self._published)


def _status(deployment: Deployment, any_ready: bool, loading: bool) -> str:
    if any_ready:
        return states.ACTIVE
    if deployment.status == states.WAKING_UP:
        return states.WAKING_UP
    if deployment.status in (states.ACTIVE, states.UNHEALTHY):
        return states.UNHEALTHY
    return states.LOADING_MODEL if loading else states.DEPLOYING


def _learnt(handle: Handle, observed: ObservedStatus) -> Handle:
    """The handle with the addresses `status` learnt after start (a pod's IP is assigned
    later): the replica's URL, and a development replica's control API, which the Syncer
    reads from the handle's data. The same handle when nothing is new."""
    if observed.url and observed.url != handle.url:
        handle = replace(handle, url=observed.url)
    if observed.control_url and observed.control_url != handle.data.get(CONTROL_URL):
        handle = replace(handle, data={**handle.data, CONTROL_URL: observed.control_url})
    return handle


def _exit_cause(exit_code: int | None) -> str:
    return f"the replica exited (code {exit_code})" if exit_code is not None else "the replica is gone"
