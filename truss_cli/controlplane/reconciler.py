"""The reconciler: derives actions from (desired, observed) and nothing else.

Every tick it reads the deployments from the store, asks the runtime what each recorded
replica is doing, and acts: start missing replicas, restart dead ones (with exponential
backoff, 1 s -> 60 s), mark DEPLOY_FAILED when a deployment never came up, UNHEALTHY when an
active one has no ready replica, stop the replicas of a deployment meant to be inactive
(DEACTIVATING -> INACTIVE), and feeds the gateway's routing table. It keeps no state that
matters across a crash (backoff timers, usage not yet flushed), so a control plane killed
between two steps repairs the rest on its next tick: a deployment left DEACTIVATING is
stopped again and becomes INACTIVE.

It also counts usage: the replica-seconds of the replicas it sees running, and the requests
the gateway served per deployment, flushed to the store every few seconds and at shutdown.

Development deployments scale to zero, wake and start at their patch point: the tick calls
`development.DevelopmentLifecycle` for those steps.

Published deployments follow the load (issue 11, docs/autoscaling.md): each tick, an ACTIVE
one's desired replica count comes from a rollout's override (`rollout_replicas`) or else from
the autoscaler (`autoscaler.decide`, on the gateway's load samples and the deployment's
effective autoscaling settings), and the tick converges to it: missing replicas start, extra
ones retire gracefully (not-ready ones first; unrouted by the next publish, their in-flight
requests finished at the gateway, then stopped). A desired count of 0 scales it to zero
(SCALED_TO_ZERO, no replica); a request wakes it exactly as it wakes a development one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from truss_cli.controlplane import autoscaler, instant_promotion
from truss_cli.controlplane.autoscaling_settings import AutoscalingSettings, effective
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.development import DEV_IDLE_SECONDS, DevelopmentLifecycle
from truss_cli.controlplane.gateway import Replica as Upstream
from truss_cli.controlplane.gateway import RoutingTable
from truss_cli.controlplane.rollout_machine import RAMPING_DOWN
from truss_cli.controlplane.runtimes.base import FAILED, GONE, Artifact, Handle, ReplicaSpec, Runtime
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Model, NotFound, Removed, Replica, Store, UsageAccrual
from truss_cli.controlplane.store import StoreError, states
from truss_cli.controlplane.store.deployments import PRODUCTION, takes_production
from truss_cli.controlplane.targets import build_targets
from truss_cli.controlplane.trees import Trees

logger = logging.getLogger("truss.controlplane.reconciler")

RUNNING_STATUSES = frozenset({states.DEPLOYING, states.LOADING_MODEL, states.ACTIVE, states.UNHEALTHY, states.WAKING_UP})
NOT_YET_ACTIVE = frozenset({states.DEPLOYING, states.LOADING_MODEL})
# Requests for these park until a replica is ready (or the park timeout) instead of failing.
PARKING = NOT_YET_ACTIVE | {states.WAKING_UP}
# A development deployment meant to be active, yet with no replica to run: a replica row left
# over (a rebuild, a crash in the middle of a scale-down) is stopped. (Published deployments
# are looked up only when scaled to zero: they never build in place.)
NOTHING_RUNS = frozenset({states.BUILDING, states.BUILD_FAILED, states.SCALED_TO_ZERO})
STOPPED = "stopped"  # a replica row kept for its logs (its deployment failed or was deactivated)
_TICK_SECONDS = 0.5
# While requests are parked and a deployment is coming up (waking, starting), tick this often:
# the replica's readiness is seen by a tick, and a cold start's answer waits on it. (Not for
# every start: a model loading for minutes with nobody waiting is polled at the usual pace.)
_STARTING_TICK_SECONDS = 0.05
_BACKOFF_FIRST, _BACKOFF_MAX = 1.0, 60.0
USAGE_FLUSH_SECONDS = 10.0
_MAX_SAMPLES = 8000  # per deployment: an hour's window (the longest) of samples at 0.5 s
# How long a retiring replica's requests in flight at the gateway may take to finish before
# it is stopped anyway (its server then drains them for protocol.DRAIN_SECONDS more).
RETIRE_DRAIN_SECONDS = 30.0


@dataclass
class Routing:
    """What one tick found: each model's targets, each deployment's ready replicas, and why the
    inactive ones answer 404. `seq` orders ticks, so an older one never overwrites a newer."""

    seq: int = 0
    models: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    replicas: dict[str, tuple[list[Upstream], bool]] = field(default_factory=dict)  # id -> (ready, starting)
    inactive: dict[str, str] = field(default_factory=dict)  # id -> the 404's detail
    asleep: set[str] = field(default_factory=set)  # scaled to zero: a request wakes them
    concurrency: dict[str, int] = field(default_factory=dict)  # id -> requests per replica at once (0: no cap)
    names: dict[str, str] = field(default_factory=dict)  # model id -> name (the gateway's 404s say it)


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
        self.dev_idle_seconds = dev_idle_seconds
        self.trees = trees
        self.development = DevelopmentLifecycle(store, runtime, trees, dev_idle_seconds)
        self._load = load
        self._in_flight_at = in_flight_at
        self.rollout_replicas = rollout_replicas
        self._before_tick = before_tick
        self._parked = parked
        self.scale_down_step_seconds = scale_down_step_seconds
        # The autoscaler's inputs and memory, per deployment (in memory: a restart only starts
        # the scale-down delay again).
        self._samples: dict[str, deque[autoscaler.Sample]] = {}
        self._samples_lock = threading.Lock()
        self._scaling: dict[str, autoscaler.Memory] = {}
        self._bad_settings: set[str] = set()  # deployments whose stored settings were reported unreadable
        # Replica rows being retired (scale-down, leftovers): from the tick that decides it on,
        # no tick counts them as the deployment's or routes to them. They wait in
        # `_retire_queue` for the next publish (so the gateway no longer routes to them), then
        # a worker thread stops them.
        self._retiring: set[str] = set()
        self._retire_queue: list[tuple[int, Replica]] = []  # (seq of the tick that queued it, row)
        self._next_restart: dict[str, float] = {}  # replica row id -> monotonic time
        self._wake = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()  # one tick at a time (deletes take it too)
        # Set by stop_all: the control plane is going down with its replicas, so no later tick
        # may start them again (the next start brings active deployments back).
        self._halted = False
        self._seq = 0
        self._published = 0
        self._starting = False  # the last published routing has a deployment coming up with no replica ready
        # Deployments whose replicas a worker thread is stopping now (a graceful stop takes up
        # to STOP_GRACE_SECONDS; the ticks of other deployments must not wait for it).
        self._deactivating: set[str] = set()
        self._deactivating_lock = threading.Lock()
        # Usage not yet in the store: id -> [replica_seconds, requests], and the names seen.
        self._usage_lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        self._names: dict[str, tuple[str, str, str]] = {}  # id -> (model id, model name, name)
        self._requests_seen: dict[str, int] = {}
        self._live: set[str] = set()  # the deployments the last tick saw
        self._last_tick: Optional[float] = None
        self._last_flush = time.monotonic()

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
                if time.monotonic() - self._last_flush >= USAGE_FLUSH_SECONDS:
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
            for deployment in deployments:
                ready: list[Upstream] = []
                running = 0
                if deployment.desired_state == states.DESIRED_INACTIVE:
                    routing.inactive[deployment.id] = _inactive_detail(deployment, models.get(deployment.model_id))
                    if not self._halted and deployment.status != states.INACTIVE:
                        self._begin_deactivation(deployment.id)
                elif not self._halted:
                    try:
                        settings = None if deployment.is_development else self._settings(deployment, scaling_inputs)
                        if settings is not None:
                            routing.concurrency[deployment.id] = settings.concurrency_target
                        if deployment.status == states.SCALED_TO_ZERO and deployment.id in wake_requests:
                            deployment = self._wake_up(deployment, settings)
                        elif deployment.status == states.SCALED_TO_ZERO and (self.rollout_replicas(deployment.id) or 0) > 0:
                            deployment = self._wake_for_rollout(deployment)
                        if deployment.status in RUNNING_STATUSES:
                            if settings is not None:
                                deployment = self._autoscale(deployment, settings, now)
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
                            self._queue_retirement(routing.seq, self._leftovers(deployment))
                    except Exception:
                        logger.exception("reconciling deployment %s failed", deployment.id)
                routing.replicas[deployment.id] = (ready, deployment.status in PARKING)
                if deployment.status == states.SCALED_TO_ZERO:
                    routing.asleep.add(deployment.id)
                model = models.get(deployment.model_id)
                self._count(deployment, model.name if model else "", replica_seconds=running * elapsed)
            with self._usage_lock:
                self._live = {deployment.id for deployment in deployments}
            self.development.forget_except(self._live)  # deleted deployments' idle clocks
            self._forget_scaling_except(self._live)
            environments = self.store.environments.list_all()
            if self._hand_over_production(deployments, environments):
                environments = self.store.environments.list_all()
            routing.models = build_targets(models, deployments, environments,
                                           self.store.environments.unfinished_promotions())
            routing.names = {model_id: model.name for model_id, model in models.items()}
            return routing

    def _hand_over_production(self, deployments: list[Deployment], environments: Iterable[Any]) -> bool:
        """A production that serves nothing goes to the first in line of the deployments meant
        to take it, once that one is ACTIVE: it became ACTIVE while one before it in line was
        still on its way, which has failed since. -> whether any production changed."""
        changed = False
        for environment in environments:
            if environment.name != PRODUCTION or environment.current_deployment_id is not None:
                continue
            first = next((d for d in deployments if d.model_id == environment.model_id and takes_production(d)), None)
            if first is None or first.status != states.ACTIVE:
                continue
            try:
                claimed = self.store.deployments.claim_production(first.id)
            except StoreError:
                logger.exception("handing production of model %s to %s failed", environment.model_id, first.id)
                continue
            if claimed:
                changed = True
                with LogFile(build_log_path(self.store, first.id)) as log:
                    log("serves production: the deployments before it in line failed")
        return changed

    # -- development deployments: scale to zero ------------------------------------------

    def _scale_to_zero(self, deployment: Deployment, routing: Routing, reason: Optional[str] = None) -> Deployment:
        asleep = self.development.scale_to_zero(deployment, reason)
        if asleep is None:
            return self.store.deployments.get_by_id(deployment.id)  # changed meanwhile; the next tick sees it
        self._queue_retirement(routing.seq, self._leftovers(deployment))
        return asleep

    def _leftovers(self, deployment: Deployment) -> list[Replica]:
        """Its replica rows still running (not stopped, not being stopped)."""
        return [r for r in self.store.replicas.list(deployment.id) if r.phase != STOPPED and r.id not in self._retiring]

    def _queue_retirement(self, seq: int, rows: list[Replica]) -> None:
        """The tick's thread: from now on `rows` are no replicas of their deployment."""
        with self._deactivating_lock:
            rows = [r for r in rows if r.id not in self._retiring]
            self._retiring.update(r.id for r in rows)
            self._retire_queue += [(seq, r) for r in rows]

    def _begin_retiring(self) -> None:
        """After a publish: stop the rows queued by the published tick or an older one in a
        worker thread (graceful: in-flight requests finish), then mark them stopped."""
        with self._deactivating_lock:
            rows = [r for seq, r in self._retire_queue if seq <= self._published]
            self._retire_queue = [(seq, r) for seq, r in self._retire_queue if seq > self._published]
        if rows:
            threading.Thread(target=self._retire, args=(rows,), name="retire-replicas", daemon=True).start()

    def _retire(self, rows: list[Replica]) -> None:
        try:
            for row in rows:  # listings count it no more
                with contextlib.suppress(NotFound):
                    self.store.replicas.set_phase(row.id, "stopping")
            self._wait_for_in_flight(rows)
            self.stop_replicas(rows)
            for row in rows:
                self._next_restart.pop(row.id, None)
                try:
                    self.store.replicas.set_phase(row.id, STOPPED)
                except NotFound:
                    pass  # deleted meanwhile
        except Exception:
            logger.exception("stopping replicas %s failed; the next tick tries again", [r.id for r in rows])
        finally:
            with self._deactivating_lock:
                self._retiring.difference_update(r.id for r in rows)
            self._wake_from_thread()

    # -- published deployments: autoscaling -------------------------------------------------

    def sample_load(self) -> None:
        """One load sample per deployment the last tick saw, from the gateway (the loop's thread)."""
        if self._load is None:
            return
        now = time.monotonic()
        averages = self._load()
        with self._usage_lock:
            live = set(self._live)
        with self._samples_lock:
            for deployment_id in live | set(averages):
                samples = self._samples.get(deployment_id)
                if samples is None:
                    samples = self._samples[deployment_id] = deque(maxlen=_MAX_SAMPLES)
                samples.append(autoscaler.Sample(now, averages.get(deployment_id, 0.0)))

    def _settings(self, deployment: Deployment, inputs: Mapping[str, tuple]) -> AutoscalingSettings:
        own, environment = inputs.get(deployment.id, (None, None))
        try:
            return effective(own, environment)
        except ValueError as exc:  # stored by an older or newer version: run on the defaults, say so once
            if deployment.id not in self._bad_settings:
                self._bad_settings.add(deployment.id)
                logger.warning("deployment %s: unreadable autoscaling settings (%s); using the defaults",
                               deployment.id, exc)
            return AutoscalingSettings()

    def _autoscale(self, deployment: Deployment, settings: AutoscalingSettings, now: float) -> Deployment:
        """The desired count: a rollout's, else the autoscaler's (ACTIVE deployments only: one
        coming up or waking is not judged on the load it could not serve yet)."""
        override = self.rollout_replicas(deployment.id)
        if override is not None:
            self._scaling.pop(deployment.id, None)
            desired, why = max(0, override), "a rollout"
        elif deployment.status != states.ACTIVE:
            self._scaling.pop(deployment.id, None)  # the scale-down delay counts from ACTIVE
            return deployment
        elif deployment.desired_replicas == 0:
            # Never the autoscaler's doing (it scales an ACTIVE deployment to zero in the tick
            # that decides it): someone asked for zero now (a promotion's SCALE_TO_ZERO cleanup).
            self._scaling.pop(deployment.id, None)
            return deployment
        else:
            with self._samples_lock:
                samples = self._samples.get(deployment.id, ())
                start = now - settings.autoscaling_window
                # Keep the last sample before the window: it marks where the first one inside began.
                while len(samples) > 1 and samples[1].at <= start:
                    samples.popleft()
                samples = list(samples)
            decision = autoscaler.decide(settings, samples, deployment.desired_replicas, now,
                                         self._scaling.get(deployment.id, autoscaler.Memory()),
                                         self.scale_down_step_seconds)
            self._scaling[deployment.id] = decision.memory
            desired = decision.desired
            why = (f"{decision.load:.2f} requests in flight over {settings.autoscaling_window} s, "
                   f"concurrency_target {settings.concurrency_target} at {settings.target_utilization_percentage}%, "
                   f"replicas {settings.min_replica}..{settings.max_replica}")
        if desired == deployment.desired_replicas:
            return deployment
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"autoscaling: {deployment.desired_replicas} -> {desired} replica(s) ({why})")
        return self.store.deployments.set_desired(deployment.id, replicas=desired)

    def _wake_up(self, deployment: Deployment, settings: Optional[AutoscalingSettings]) -> Deployment:
        """A request found it at zero: WAKING_UP with one replica (min_replica when higher)."""
        woken = self.development.wake_up(deployment)
        if settings is None or woken.status != states.WAKING_UP:
            return woken
        self._scaling.pop(deployment.id, None)
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
        self._scaling.pop(deployment.id, None)
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log("waking up: a promotion into an environment wants its replicas")
        return replace(deployment, status=states.WAKING_UP, status_detail=None)

    def _forget_scaling_except(self, live: set[str]) -> None:
        for deployment_id in set(self._scaling) - live:
            self._scaling.pop(deployment_id, None)
        with self._samples_lock:
            for deployment_id in set(self._samples) - live:
                self._samples.pop(deployment_id, None)

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
            if observed.url and observed.url != handle.url:  # learnt after start (ObservedStatus.url)
                handle = replace(handle, url=observed.url)
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
                deployment = self._promote_when_active(deployment)
        return deployment, ready, running

    def _retire_extra(self, deployment: Deployment, seen: list, seq: int) -> list:
        """Scale down: retire the replicas beyond the desired count, those that serve nothing
        first (down, then starting), then the newest ready ones. -> the ones kept."""
        extra = len(seen) - deployment.desired_replicas
        ranked = sorted(range(len(seen)), key=lambda i: (seen[i][2].is_ready, seen[i][2].phase not in (FAILED, GONE), -i))
        leaving = set(ranked[:extra])
        self._queue_retirement(seq, [seen[i][0] for i in sorted(leaving)])
        with LogFile(build_log_path(self.store, deployment.id)) as log:
            log(f"scaling down: retiring {extra} replica(s) (desired {deployment.desired_replicas}); "
                "each finishes its requests first")
        return [entry for i, entry in enumerate(seen) if i not in leaving]

    def _promote_when_active(self, deployment: Deployment) -> Deployment:
        """`truss push --promote` / `--environment`, once the deployment is ACTIVE: promoted as the
        routes promote (instant, or a rolling or canary promotion begun when the environment's
        settings ask for one). A promotion that cannot happen (one already under way, the
        environment deleted meanwhile) is said in the deployment's log; the deployment serves on."""
        config = deployment.config
        environment = config.get("promote_environment") or PRODUCTION
        try:
            promoted = instant_promotion.promote(self.store, deployment.model_id, environment, deployment.id,
                                                 scale_down_previous=config.get("scale_down_previous_deployment"))
        except StoreError as exc:
            with LogFile(build_log_path(self.store, deployment.id)) as log:
                log(f"not promoted into {environment}: {exc}")
            return deployment
        return promoted.deployment

    def retire(self, rows: list[Replica]) -> None:
        """Stop these replica rows once the gateway no longer routes to them: from the next
        tick on they are no replicas of their deployment (a replacement took over)."""
        with self._lock:
            self._queue_retirement(self._seq + 1, rows)

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

    # -- deactivation (a thread per deployment) -------------------------------------------

    def _wait_for_in_flight(self, rows: list[Replica]) -> None:
        """Unrouted already: wait (bounded) until the gateway has no request at these replicas,
        so none is cut off by the stop (a stream that outlasts the bound is drained by the server)."""
        if self._in_flight_at is None:
            return
        urls = [str(row.handle.get("url") or "") for row in rows]
        deadline = time.monotonic() + RETIRE_DRAIN_SECONDS
        while any(url and self._in_flight_at(url) for url in urls) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _begin_deactivation(self, deployment_id: str) -> None:
        with self._deactivating_lock:
            if deployment_id in self._deactivating:
                return
            self._deactivating.add(deployment_id)
        threading.Thread(target=self._deactivate, args=(deployment_id,), name=f"deactivate-{deployment_id}",
                         daemon=True).start()

    def _deactivate(self, deployment_id: str) -> None:
        """Stop every replica of the deployment gracefully (each server drains its in-flight
        requests), keep their rows for the logs, then mark the deployment INACTIVE."""
        try:
            rows = [r for r in self.store.replicas.list(deployment_id) if r.phase != STOPPED]
            self.stop_replicas(rows)
            for row in rows:
                self._next_restart.pop(row.id, None)
                try:
                    self.store.replicas.set_phase(row.id, STOPPED)
                except NotFound:
                    pass  # deleted meanwhile
            if self.store.deployments.finish_deactivation(deployment_id):
                with LogFile(build_log_path(self.store, deployment_id)) as log:
                    log(f"deactivated: {len(rows)} replica(s) stopped")
        except Exception:
            logger.exception("deactivating deployment %s failed; the next tick tries again", deployment_id)
        finally:
            with self._deactivating_lock:
                self._deactivating.discard(deployment_id)
            self._wake_from_thread()

    def stop_replicas(self, rows: Iterable[Replica]) -> None:
        """Stop replicas with the runtime's default grace (SIGTERM: in-flight requests finish),
        all at once, so the whole stop takes one grace period at most."""
        threads = [
            threading.Thread(target=self._stop_quietly, args=(Handle.from_dict(dict(row.handle)),), daemon=True)
            for row in rows
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _stop_quietly(self, handle: Handle) -> None:
        try:
            self.runtime.stop(handle)
        except Exception:
            logger.exception("stopping replica %s failed", handle.replica_id)

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

    # -- usage ------------------------------------------------------------------------------

    def _count(self, deployment: Deployment, model_name: str, *, replica_seconds: float = 0.0) -> None:
        with self._usage_lock:
            self._names[deployment.id] = (deployment.model_id, model_name, deployment.name)
            if replica_seconds:
                self._pending.setdefault(deployment.id, [0.0, 0])[0] += replica_seconds

    def count_requests(self) -> None:
        """Take the gateway's request counts since the last look (the event loop's thread)."""
        if self._served_requests is None:
            return
        totals = dict(self._served_requests())
        now = time.monotonic()
        with self._usage_lock:
            for deployment_id, total in totals.items():
                served = total - self._requests_seen.get(deployment_id, 0)
                if served > 0:
                    self._pending.setdefault(deployment_id, [0.0, 0])[1] += served
                    self.development.touch(deployment_id, now)  # the idle clock: a request ended since the last look
                self._requests_seen[deployment_id] = total
        if self._busy_deployments is not None:
            for deployment_id in self._busy_deployments():
                self.development.touch(deployment_id, now)  # one in flight (a long stream is no idleness)

    def flush_usage(self) -> None:
        """Add what was counted since the last flush to the store (kept for the next one if
        the store refuses now)."""
        with self._usage_lock:
            pending, self._pending = self._pending, {}
            names = dict(self._names)
            # Names of deleted deployments are needed only for their last counts (these).
            self._names = {i: n for i, n in self._names.items() if i in self._live}
        self._last_flush = time.monotonic()
        accruals = [
            UsageAccrual(deployment_id, *names.get(deployment_id, ("", "", "")), replica_seconds=seconds,
                         requests=int(requests))
            for deployment_id, (seconds, requests) in pending.items()
        ]
        try:
            self.store.usage.accrue(accruals)
        except Exception:
            logger.exception("recording usage failed; keeping it for the next flush")
            with self._usage_lock:
                for accrual in accruals:
                    counts = self._pending.setdefault(accrual.deployment_id, [0.0, 0])
                    counts[0] += accrual.replica_seconds
                    counts[1] += accrual.requests

    # -- the loop's thread ----------------------------------------------------------------

    def _publish(self, routing: Routing) -> None:
        if routing.seq < self._published:
            # A newer tick was published already (a refresh overtook the loop's tick); what
            # this one queued for retirement the gateway no longer routes to either.
            self._begin_retiring()
            return
        self._published = routing.seq
        self._starting = any(starting and not ready for ready, starting in routing.replicas.values())
        for model_id, targets in routing.models.items():
            self.table.set_model(model_id, targets, routing.names.get(model_id))
        for model_id in self.table.model_ids() - set(routing.models):  # deleted models
            self.table.remove_model(model_id)
        for deployment_id, (ready, starting) in routing.replicas.items():
            # Inactive first: the requests a replica change wakes resolve against it.
            self.table.set_inactive(deployment_id, routing.inactive.get(deployment_id))
            self.table.set_concurrency(deployment_id, routing.concurrency.get(deployment_id, 0))
            self.table.set_replicas(deployment_id, ready, starting, deployment_id in routing.asleep)
        self.table.keep_only(routing.replicas)
        # Only now that the gateway no longer routes to them.
        self._begin_retiring()


def _inactive_detail(deployment: Deployment, model: Optional[Model]) -> str:
    model_name = model.name if model else deployment.model_id
    command = " ".join(shlex.quote(w) for w in ("truss", "deployments", "activate", "--model", model_name, deployment.name))
    return (f"deployment {deployment.name} ({deployment.id}) of model {model_name} is inactive; "
            f"activate it with: {command}")


def _status(deployment: Deployment, any_ready: bool, loading: bool) -> str:
    if any_ready:
        return states.ACTIVE
    if deployment.status == states.WAKING_UP:
        return states.WAKING_UP
    if deployment.status in (states.ACTIVE, states.UNHEALTHY):
        return states.UNHEALTHY
    return states.LOADING_MODEL if loading else states.DEPLOYING


def _exit_cause(exit_code: int | None) -> str:
    return f"the replica exited (code {exit_code})" if exit_code is not None else "the replica is gone"
