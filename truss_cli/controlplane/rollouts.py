"""Promotions into environments, driven (issue 11, S4): begin one, apply a control, and tick.

- `begin_promotion(store, model_id, environment_name, candidate_id, scale_down_previous=...)`
  checks the candidate, fixes the plan (rollout_machine.Plan) from the environment's
  promotion_settings and the previous deployment, and writes the promotions row. An instant
  promotion of an ACTIVE candidate finishes at once.
- `apply_control(store, model_id, environment_name, action)`: pause, resume, cancel,
  force_cancel, force_roll_forward (rollout_machine.control decides what each does now).
- `Rollouts(store).tick()`: once per reconciler tick, every unfinished promotion takes one
  step of the machine with the READY counts observed; `rollout_replicas(deployment_id)` is
  what the reconciler asks before the autoscaler (S3).

When a promotion ends SUCCEEDED the candidate becomes the environment's current deployment
and the previous one gets the cleanup strategy; FAILED or CANCELED leave the environment as
it was (the previous deployment never stopped being current: only the traffic split moved).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from typing import Any, Optional

from truss_cli.controlplane import autoscaling_settings, promotion_settings, rollout_machine as machine
from truss_cli.controlplane.promotion_settings import CleanupStrategy, PromotionKind
from truss_cli.controlplane.store import Conflict, NotFound, Store, states
from truss_cli.controlplane.store.promotions import EnvironmentMoved, EnvironmentRow, Promotion, Promotions, in_progress
from truss_cli.controlplane.store.records import Deployment

log = logging.getLogger(__name__)

_UNSERVABLE = frozenset({states.BUILD_FAILED, states.DEPLOY_FAILED})
# A candidate in these can take traffic now (SCALED_TO_ZERO wakes on the first request).
_SERVABLE = frozenset({states.ACTIVE, states.SCALED_TO_ZERO, states.WAKING_UP})
# Instant swaps landing between begin_promotion's read and its write: plan again this often.
_PLAN_ATTEMPTS = 3


class ControlRefused(Conflict):
    """A control that does not apply to the promotion as it is (409 PROMOTION_CONTROL_REFUSED)."""

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message, hint=hint, code="PROMOTION_CONTROL_REFUSED")


def promotions_of(store: Store) -> Promotions:
    return store.promotions


# -- begin ------------------------------------------------------------------------------------


def begin_promotion(store: Store, model_id: str, environment_name: str, candidate_id: str, *,
                    scale_down_previous: Optional[bool] = None, now: Optional[float] = None) -> Promotion:
    """Promote `candidate_id` into the environment: the promotions row, as it begins.

    The row is written under the environment row's lock (`Promotions.create`), which an
    instant swap takes too; if a swap changed what serves the environment since this read it,
    the promotion is planned again from the new current deployment."""
    promotions = promotions_of(store)
    for _ in range(_PLAN_ATTEMPTS):
        environment = promotions.environment(model_id, environment_name)
        candidate = _candidate(store, model_id, candidate_id, environment)
        running = promotions.unfinished(environment.id)
        if running is not None:
            raise in_progress(environment.name, running)
        settings = promotion_settings.parse(environment.promotion_settings)
        previous = (store.deployments.get_by_id(environment.current_deployment_id)
                    if environment.current_deployment_id else None)
        # Nothing serves the environment yet: there is nothing to roll from, so it is instant.
        kind = settings.kind if previous is not None else PromotionKind.INSTANT
        plan = _plan(promotions, kind, settings, previous, environment)
        cleanup = _cleanup(settings.promotion_cleanup_strategy, scale_down_previous)
        started = time.time() if now is None else now
        state = machine.RolloutState(phase_since=started)
        try:
            promotion = promotions.create(
                model_id=model_id, environment=environment, candidate_deployment_id=candidate.id,
                previous_deployment_id=previous.id if previous else None, kind=kind.value, status=state.status,
                settings=_settings(plan, cleanup, state),
            )
        except EnvironmentMoved:
            continue
        if kind == PromotionKind.INSTANT and candidate.status in _SERVABLE:
            promotion = _advance(store, promotion, machine.Observed(candidate_active=True), started) or promotion
        return promotion
    raise Conflict(f"environment {environment_name!r} kept changing its deployment while the promotion began",
                   hint="promote again", code="PROMOTION_IN_PROGRESS")


def _candidate(store: Store, model_id: str, candidate_id: str, environment: EnvironmentRow) -> Deployment:
    try:
        candidate = store.deployments.get_by_id(candidate_id)
    except NotFound:
        candidate = None
    if candidate is None or candidate.model_id != model_id:
        names = [f"{d.name} ({d.id})" for d in store.deployments.list(model_id)]
        raise NotFound("deployment", candidate_id, names)
    label = f"deployment {candidate.name} ({candidate.id})"
    if candidate.is_development:
        raise Conflict("the development deployment cannot be promoted into an environment",
                       hint="push a published deployment: truss push", code="NOT_PROMOTABLE")
    if candidate.desired_state == states.DESIRED_INACTIVE:
        raise Conflict(f"{label} is inactive", hint=f"activate it first: truss deployments activate {candidate.name}",
                       code="NOT_PROMOTABLE")
    if candidate.status in _UNSERVABLE:
        raise Conflict(f"{label} failed ({candidate.status})", hint="retry it first: truss deployments retry",
                       code="NOT_PROMOTABLE")
    if candidate.status == states.BUILDING:
        # The promotion's ready timeout must not count a build (a Docker build may take long).
        raise Conflict(f"{label} is still building", code="NOT_PROMOTABLE",
                       hint=f"promote it once it is ACTIVE (truss push --environment {environment.name} "
                            "waits for that)")
    if environment.current_deployment_id == candidate.id:
        raise Conflict(f"{label} already serves environment {environment.name!r}", code="ALREADY_CURRENT")
    return candidate


def _plan(promotions: Promotions, kind: PromotionKind, settings: promotion_settings.PromotionSettings,
          previous: Optional[Deployment], environment: EnvironmentRow) -> machine.Plan:
    if previous is None or kind == PromotionKind.INSTANT:
        return machine.Plan(kind=PromotionKind.INSTANT.value)
    config = settings.rolling_deploy_config
    scaling = autoscaling_settings.effective(promotions.deployment_autoscaling(previous.id),
                                             environment.autoscaling_settings)
    return machine.Plan(
        kind=kind.value,
        # The candidate ends carrying what the previous carries now.
        target_replicas=max(1, previous.desired_replicas, scaling.min_replica),
        max_surge_percent=config.max_surge_percent, max_unavailable_percent=config.max_unavailable_percent,
        stabilization_time_seconds=config.stabilization_time_seconds,
        replica_overhead_percent=config.replica_overhead_percent,
        ramp_up_duration_seconds=settings.ramp_up_duration_seconds,
        canary_min_replicas=max(1, scaling.min_replica),
    )


def _cleanup(strategy: CleanupStrategy, scale_down_previous: Optional[bool]) -> str:
    """Baseten's `scale_down_previous_deployment`: False keeps it; True scales a KEPT one down."""
    if scale_down_previous is False:
        return CleanupStrategy.KEEP.value
    if scale_down_previous is True and strategy == CleanupStrategy.KEEP:
        return CleanupStrategy.SCALE_TO_ZERO.value
    return strategy.value


def _settings(plan: machine.Plan, cleanup: str, state: machine.RolloutState) -> dict[str, Any]:
    return {"plan": asdict(plan), "cleanup": cleanup,
            "progress": {"phase": state.phase, "phase_since": state.phase_since, "paused_status": state.paused_status}}


def _state_of(promotion: Promotion) -> tuple[machine.RolloutState, machine.Plan]:
    progress = promotion.settings.get("progress", {})
    state = machine.RolloutState(
        status=promotion.status, percent=promotion.percent_traffic_to_new_version, step=promotion.step,
        phase=progress.get("phase", machine.PHASE_BOUNDARY), phase_since=float(progress.get("phase_since", 0.0)),
        paused_status=progress.get("paused_status"), requested_action=promotion.requested_action,
        error_message=promotion.error_message,
    )
    return state, machine.Plan(**promotion.settings["plan"])


def wanted_replicas(promotion: Promotion) -> tuple[Optional[int], Optional[int]]:
    """(candidate, previous) replicas the promotion asks for as it stands; None: the autoscaler's."""
    state, plan = _state_of(promotion)
    return machine.replicas(state, plan)


def ready_replicas(store: Store, deployment_id: str) -> int:
    return _ready(store, deployment_id)


# -- controls ---------------------------------------------------------------------------------


def apply_control(store: Store, model_id: str, environment_name: str, action: str,
                  now: Optional[float] = None) -> Promotion:
    """Apply a control to the environment's promotion in progress; the row as it is after."""
    promotions = promotions_of(store)
    environment = promotions.environment(model_id, environment_name)
    for _ in range(20):  # a tick may write between the read and the write: read again
        promotion = promotions.unfinished(environment.id)
        if promotion is None:
            raise Conflict(f"no promotion in progress in environment {environment_name!r}",
                           hint=f"promote a deployment into it first: truss deployments promote DEPLOYMENT "
                                f"--environment {environment_name}; `truss rollout status` shows the last one",
                           code="NO_PROMOTION_IN_PROGRESS")
        state, plan = _state_of(promotion)
        try:
            after = machine.control(state, plan, action, time.time() if now is None else now)
        except machine.ControlRefused as exc:
            message, *rest = exc.args
            raise ControlRefused(message, rest[0] if rest else None) from None
        written = _write(store, promotion, after, plan)
        if written is not None:
            return written
    raise Conflict("the promotion kept changing while the control was written; try again", code="BUSY")


# -- the driver -------------------------------------------------------------------------------


class Rollouts:
    """The per-tick driver: call `tick()` from the reconciler, pass `rollout_replicas` to it."""

    def __init__(self, store: Store, clock=time.time):
        self._store = store
        self._clock = clock
        self._overrides: dict[str, int] = {}
        self._lock = threading.Lock()

    def rollout_replicas(self, deployment_id: str) -> Optional[int]:
        """The replicas a promotion under way wants of this deployment; None: no opinion."""
        with self._lock:
            return self._overrides.get(deployment_id)

    def tick(self) -> None:
        overrides: dict[str, int] = {}
        for promotion in promotions_of(self._store).list_unfinished():
            try:
                decision = self._step(promotion)
            except Exception:  # one broken promotion must not stop the others
                log.exception("promotion %s: tick failed", promotion.id)
                continue
            if decision is None:
                continue
            if decision.candidate_replicas is not None:
                overrides[promotion.candidate_deployment_id] = decision.candidate_replicas
            if decision.previous_replicas is not None and promotion.previous_deployment_id:
                overrides[promotion.previous_deployment_id] = decision.previous_replicas
        with self._lock:
            self._overrides = overrides

    def _step(self, promotion: Promotion) -> Optional[machine.Decision]:
        state, plan = _state_of(promotion)
        decision = machine.step(state, self._observe(promotion), plan, self._clock())
        if decision.state != state:
            _write(self._store, promotion, decision.state, plan)  # lost to a control: next tick
        return decision

    def _observe(self, promotion: Promotion) -> machine.Observed:
        store = self._store
        candidate = store.deployments.get_by_id(promotion.candidate_deployment_id)
        previous_ready = 0
        if promotion.previous_deployment_id:
            previous_ready = _ready(store, promotion.previous_deployment_id)
        failed = None
        if candidate.status in _UNSERVABLE:
            failed = f"candidate {candidate.name} is {candidate.status}" + (
                f": {candidate.status_detail}" if candidate.status_detail else "")
        elif candidate.desired_state == states.DESIRED_INACTIVE:
            failed = f"candidate {candidate.name} was deactivated"
        return machine.Observed(candidate_ready=_ready(store, candidate.id), previous_ready=previous_ready,
                                candidate_active=candidate.status in _SERVABLE, candidate_failed=failed)


def _ready(store: Store, deployment_id: str) -> int:
    return sum(1 for r in store.replicas.list(deployment_id) if r.phase == "ready")


def _advance(store: Store, promotion: Promotion, observed: machine.Observed, now: float) -> Optional[Promotion]:
    state, plan = _state_of(promotion)
    return _write(store, promotion, machine.step(state, observed, plan, now).state, plan)


def _write(store: Store, promotion: Promotion, state: machine.RolloutState, plan: machine.Plan) -> Optional[Promotion]:
    """Persist the machine's state; on a finish, the environment and the previous deployment
    follow. Make-current goes first: a crash after it leaves an unfinished row that the next
    tick finishes again (both steps are idempotent), never a finished row with the old current."""
    finished = state.status in machine.FINISHED
    if finished and state.status == machine.SUCCEEDED:
        _make_current(store, promotion)
    written = promotions_of(store).save(
        promotion, status=state.status, percent=state.percent, step=state.step,
        requested_action=state.requested_action, error_message=state.error_message,
        settings={**promotion.settings, "progress": {"phase": state.phase, "phase_since": state.phase_since,
                                                     "paused_status": state.paused_status}},
        finished=finished,
    )
    if written is not None and state.status == machine.SUCCEEDED and promotion.previous_deployment_id:
        _clean_up(store, promotion.previous_deployment_id, promotion.settings.get("cleanup", "KEEP"))
    return written


def _make_current(store: Store, promotion: Promotion) -> None:
    environment = promotions_of(store).environment_by_id(promotion.environment_id)
    store.environments.set_current(promotion.model_id, environment.name, promotion.candidate_deployment_id)


def _clean_up(store: Store, previous_id: str, strategy: str) -> None:
    """promotion_cleanup_strategy for the deployment that served before."""
    try:
        if strategy == CleanupStrategy.DEACTIVATE.value:
            store.deployments.deactivate(previous_id)
        elif strategy == CleanupStrategy.SCALE_TO_ZERO.value:
            # No replicas wanted: the reconciler takes an ACTIVE published deployment at desired 0
            # to SCALED_TO_ZERO at once (it wakes on a request).
            store.deployments.set_desired(previous_id, replicas=0)
    except (NotFound, Conflict) as exc:  # deleted or unbuilt meanwhile: nothing to clean
        log.info("cleanup of %s skipped: %s", previous_id, exc)


__all__ = ["ControlRefused", "Rollouts", "apply_control", "begin_promotion", "promotions_of", "ready_replicas",
           "wanted_replicas"]
