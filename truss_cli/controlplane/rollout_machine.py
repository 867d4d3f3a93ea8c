"""The promotion state machine (issue 11), pure: state + what is observed + the plan + now ->
the next state, the replica counts to ask for, the traffic share of the candidate.

No database, no clock, no I/O: `controlplane/rollouts.py` reads the promotion row and the
replicas, calls `step` once per reconciler tick, and writes back what it returns. Every rule of
a rollout lives here so that it can be tested as a table.

Rolling (`T` = the candidate's target replicas, `s` = the step in replicas):
- surge (`max_surge_percent`): step k asks the candidate for min(k*s, T) while the previous
  keeps T-(k-1)*s; once that many candidate replicas are READY, traffic moves in proportion
  (ready/T), then `stabilization_time_seconds` pass, then the next step also takes s replicas
  off the previous;
- unavailable (`max_unavailable_percent`): step k first takes the previous down to T-k*s, then
  asks the candidate for min(k*s, T); the traffic moves when those are READY, then the wait.
Steps advance on READY counts, never on what was asked for. After the last step: SUCCEEDED.
A candidate that fails (its deployment failed, or it is not READY within `ready_timeout`)
ends FAILED with 0 % to it.

Controls (`requested_action`) take effect at step boundaries: at the next step unless the
machine is inside a stabilization wait (then at its end). `force_*` take effect at once.

Canary (deprecated): the candidate is asked for the previous deployment's min replicas; once
they are READY, traffic moves in 10 equal stages over `ramp_up_duration_seconds`.

Instant: all traffic moves when the candidate is ACTIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

__all__ = [
    "ACTIONS", "ControlRefused", "Decision", "FINISHED", "Observed", "Plan", "RolloutState", "control", "replicas",
    "step",
    "RELEASING", "RAMPING_UP", "PAUSED", "RAMPING_DOWN", "SUCCEEDED", "FAILED", "CANCELED",
]

# Baseten's promotion statuses.
RELEASING = "RELEASING"        # the candidate is coming up; no traffic on it yet
RAMPING_UP = "RAMPING_UP"      # traffic is moving to the candidate
PAUSED = "PAUSED"              # held at a step boundary; resume goes on
RAMPING_DOWN = "RAMPING_DOWN"  # canceled: traffic goes back to the previous deployment
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELED = "CANCELED"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED})

PAUSE, RESUME, CANCEL = "pause", "resume", "cancel"
FORCE_CANCEL, FORCE_ROLL_FORWARD = "force_cancel", "force_roll_forward"
ACTIONS = frozenset({PAUSE, RESUME, CANCEL, FORCE_CANCEL, FORCE_ROLL_FORWARD})

# Phases inside a rolling step (kept in the row's settings.progress).
PHASE_UP = "up"                  # the candidate's replicas of this step are asked for; waiting READY
PHASE_STABILIZING = "stabilizing"  # traffic moved; waiting stabilization_time_seconds
PHASE_BOUNDARY = "boundary"      # between two steps (before the first one too): controls apply here

CANARY_STAGES = 10
DEFAULT_READY_TIMEOUT = 900.0


class ControlRefused(Exception):
    """A control that does not apply to the promotion as it is (the API answers 409)."""


@dataclass(frozen=True)
class Plan:
    """What the promotion runs with, fixed when it begins."""
    kind: str                       # instant | rolling | canary
    target_replicas: int = 1        # T: the candidate's replicas at the end (rolling)
    max_surge_percent: int = 10
    max_unavailable_percent: int = 0
    stabilization_time_seconds: float = 0.0
    replica_overhead_percent: int = 0
    ramp_up_duration_seconds: float = 600.0
    canary_min_replicas: int = 1    # the previous deployment's min replicas (canary)
    ready_timeout_seconds: float = DEFAULT_READY_TIMEOUT

    @property
    def surge(self) -> bool:
        return self.max_surge_percent > 0

    @property
    def step_replicas(self) -> int:
        percent = self.max_surge_percent if self.surge else self.max_unavailable_percent
        return max(1, math.ceil(self.target_replicas * percent / 100))

    @property
    def steps(self) -> int:
        return math.ceil(self.target_replicas / self.step_replicas)


@dataclass(frozen=True)
class RolloutState:
    status: str = RELEASING
    percent: int = 0                 # percent_traffic_to_new_version
    step: int = 0                    # rolling: the step under way (1..steps); canary: the stage
    phase: str = PHASE_BOUNDARY
    phase_since: float = 0.0         # when the phase (or the canary's stage 1) began
    paused_status: Optional[str] = None  # the status a resume returns to
    requested_action: Optional[str] = None
    error_message: Optional[str] = None


@dataclass(frozen=True)
class Observed:
    candidate_ready: int = 0
    previous_ready: int = 0
    candidate_active: bool = False        # instant: the deployment is ACTIVE (or can wake)
    candidate_failed: Optional[str] = None  # why the candidate cannot serve (its deployment failed)


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    candidate_replicas: Optional[int]  # None: no override (the autoscaler decides)
    previous_replicas: Optional[int]
    percent: int

    @property
    def finished(self) -> bool:
        return self.state.status in FINISHED


# -- controls ---------------------------------------------------------------------------------


def control(state: RolloutState, plan: Plan, action: str, now: float) -> RolloutState:
    """What a control does when asked: force_* at once, the others recorded for the next step
    boundary (cancel with nothing moved yet, and resume of a paused promotion, at once)."""
    if action not in ACTIONS:
        raise ControlRefused(f"unknown action {action!r}; one of {', '.join(sorted(ACTIONS))}")
    if state.status in FINISHED:
        raise ControlRefused(f"the promotion has already ended ({state.status})")
    if action == FORCE_CANCEL:
        return _ended(state, CANCELED, 0, now)
    if action == FORCE_ROLL_FORWARD:
        if state.status == RAMPING_DOWN:
            raise ControlRefused("the promotion is ramping down after a cancel; promote the deployment again")
        return _ended(state, SUCCEEDED, 100, now)
    if action == CANCEL:
        if state.status == RAMPING_DOWN:
            return state
        if state.percent == 0 or plan.kind != "rolling":
            # Nothing to ramp back (or canary/instant: all traffic returns at once).
            return _ended(state, CANCELED, 0, now)
        return replace(state, requested_action=CANCEL)
    if action == PAUSE:
        if plan.kind != "rolling":
            raise ControlRefused(f"only a rolling promotion can be paused (this one is {plan.kind})",
                                 "cancel it instead, or use rolling_deploy in the environment's promotion_settings")
        if state.status == PAUSED:
            return replace(state, requested_action=None)
        if state.status == RAMPING_DOWN:
            raise ControlRefused("the promotion is ramping down after a cancel and cannot be paused")
        return replace(state, requested_action=PAUSE)
    # RESUME
    if state.status == PAUSED:
        # Back where it paused; a wait for replicas starts its timeout again.
        return replace(state, status=state.paused_status or RAMPING_UP, paused_status=None, requested_action=None,
                       phase_since=now)
    if state.requested_action == PAUSE:
        return replace(state, requested_action=None)  # the pause had not happened yet
    raise ControlRefused(f"the promotion is not paused ({state.status})")


def _ended(state: RolloutState, status: str, percent: int, now: float, error: Optional[str] = None) -> RolloutState:
    return replace(state, status=status, percent=percent, requested_action=None, paused_status=None,
                   phase_since=now, error_message=error if error is not None else state.error_message)


# -- the tick ---------------------------------------------------------------------------------


def step(state: RolloutState, observed: Observed, plan: Plan, now: float) -> Decision:
    """One tick of the promotion."""
    if state.status in FINISHED:
        return Decision(state, None, None, state.percent)
    if observed.candidate_failed:  # ramping down too: a failed candidate serves nothing
        return _decide(_ended(state, FAILED, 0, now, observed.candidate_failed), plan)
    if plan.kind == "instant":
        if observed.candidate_active:
            return _decide(_ended(state, SUCCEEDED, 100, now), plan)
        return _decide(_timed_out(state, plan, now) or state, plan)
    if plan.kind == "canary":
        return _decide(_canary(state, observed, plan, now), plan)
    return _decide(_rolling(state, observed, plan, now), plan)


def _timed_out(state: RolloutState, plan: Plan, now: float) -> Optional[RolloutState]:
    if now - state.phase_since >= plan.ready_timeout_seconds:
        return _ended(state, FAILED, 0, now,
                      f"the candidate did not become ready within {plan.ready_timeout_seconds:g} s")
    return None


def _canary(state: RolloutState, observed: Observed, plan: Plan, now: float) -> RolloutState:
    if state.status == RELEASING:
        if observed.candidate_ready < plan.canary_min_replicas:
            return _timed_out(state, plan, now) or state
        state = replace(state, status=RAMPING_UP, step=1, phase_since=now)
    stage_length = plan.ramp_up_duration_seconds / CANARY_STAGES
    elapsed = now - state.phase_since
    if elapsed >= plan.ramp_up_duration_seconds:
        return _ended(state, SUCCEEDED, 100, now)
    stage = min(CANARY_STAGES, int(elapsed // stage_length) + 1)
    return replace(state, step=stage, percent=stage * 100 // CANARY_STAGES)


def _rolling(state: RolloutState, observed: Observed, plan: Plan, now: float) -> RolloutState:
    if state.status == PAUSED:
        return state
    if state.status == RAMPING_DOWN:
        return _ramp_down(state, observed, plan, now)
    if state.phase == PHASE_STABILIZING:
        if now - state.phase_since < plan.stabilization_time_seconds:
            return state
        state = replace(state, phase=PHASE_BOUNDARY, phase_since=now)
    if state.phase == PHASE_BOUNDARY:
        # A step boundary: the controls asked for meanwhile apply now (after the last step's wait
        # too: a cancel or pause asked during it is not dropped by the finish).
        boundary = _at_boundary(state, now)
        if boundary is not None:
            return boundary
        if state.step >= plan.steps:
            return _ended(state, SUCCEEDED, 100, now)
        state = replace(state, step=state.step + 1, phase=PHASE_UP, phase_since=now)
    elif state.requested_action is not None:
        # Waiting for this step's replicas: no traffic has moved in it yet, so a boundary too.
        boundary = _at_boundary(state, now)
        if boundary is not None:
            return boundary
    wanted = min(state.step * plan.step_replicas, plan.target_replicas)
    if observed.candidate_ready < wanted:
        return _timed_out(state, plan, now) or state
    # In proportion to READY capacity, never beyond this step's share (overhead replicas do not count).
    percent = max(state.percent, 100 * wanted // plan.target_replicas)
    if state.step >= plan.steps:
        percent = 100
    return replace(state, status=RAMPING_UP, percent=percent, phase=PHASE_STABILIZING, phase_since=now)


def _at_boundary(state: RolloutState, now: float) -> Optional[RolloutState]:
    if state.requested_action == PAUSE:
        return replace(state, status=PAUSED, paused_status=state.status, requested_action=None, phase_since=now)
    if state.requested_action == CANCEL:
        if state.percent == 0:
            return _ended(state, CANCELED, 0, now)
        return replace(state, status=RAMPING_DOWN, requested_action=None, phase_since=now)
    return None


def _ramp_down(state: RolloutState, observed: Observed, plan: Plan, now: float) -> RolloutState:
    """Back to the previous deployment, as fast as its READY replicas come back."""
    back = 100 * min(observed.previous_ready, plan.target_replicas) // plan.target_replicas
    percent = min(state.percent, 100 - back)
    if percent <= 0:
        return _ended(state, CANCELED, 0, now)
    # No timeout here: finishing would send all traffic to a previous deployment that is not
    # back; the candidate keeps its share until it is (or force_cancel / force_roll_forward).
    return replace(state, percent=percent)


# -- replica counts ---------------------------------------------------------------------------


def _decide(state: RolloutState, plan: Plan) -> Decision:
    candidate, previous = replicas(state, plan)
    return Decision(state, candidate, previous, state.percent)


def _with_overhead(count: int, plan: Plan) -> int:
    return math.ceil(count * (100 + plan.replica_overhead_percent) / 100)


def replicas(state: RolloutState, plan: Plan) -> tuple[Optional[int], Optional[int]]:
    """(candidate, previous) desired counts; None leaves the deployment to its autoscaler."""
    if state.status in FINISHED or plan.kind == "instant":
        return None, None
    if plan.kind == "canary":
        return (plan.canary_min_replicas if state.status == RELEASING else None), None
    target = plan.target_replicas
    if state.step == 0:
        return None, None  # before the first step (not ticked yet, or paused there): no opinion yet
    k = state.step
    candidate = _with_overhead(min(k * plan.step_replicas, target), plan)
    # Surge: the previous gives up a step's replicas only after the step before stabilized;
    # unavailable: before this step's candidate replicas are ready.
    off = (k - 1 if plan.surge else k) * plan.step_replicas
    previous = max(0, target - off)
    if state.status == RAMPING_DOWN:
        previous = target  # all of it back; the candidate keeps its replicas until its share is 0
    return candidate, previous
