"""The promotion state machine as tables: each row is a tick (time, READY counts observed, a
control asked before the tick) and what the machine answers (status, percent to the candidate,
replicas asked of the candidate and of the previous deployment)."""

from __future__ import annotations

from typing import Optional

import pytest

from truss_cli.controlplane.rollout_machine import (
    CANCELED, FAILED, PAUSED, RAMPING_DOWN, RAMPING_UP, RELEASING, SUCCEEDED, ControlRefused, Observed, Plan,
    RolloutState, control, step,
)

Row = tuple  # (now, candidate_ready, previous_ready, action_or_None, status, percent, candidate, previous)


def run(plan: Plan, rows: list[Row], state: Optional[RolloutState] = None,
        failed: Optional[dict[float, str]] = None) -> RolloutState:
    state = state or RolloutState(phase_since=rows[0][0])
    for number, (now, cand, prev, action, status, percent, want_c, want_p) in enumerate(rows):
        if action is not None:
            state = control(state, plan, action, now)
        decision = step(state, Observed(cand, prev, candidate_failed=(failed or {}).get(now)), plan, now)
        state = decision.state
        got = (state.status, decision.percent, decision.candidate_replicas, decision.previous_replicas)
        assert got == (status, percent, want_c, want_p), f"row {number} (t={now}): {got}"
    return state


ROLLING_SURGE = Plan("rolling", target_replicas=4, max_surge_percent=25, stabilization_time_seconds=10)


def test_rolling_surge_steps_advance_on_ready_counts_and_wait_for_stabilization() -> None:
    run(ROLLING_SURGE, [
        # now cand prev action  status      %    cand prev
        (0, 0, 4, None, RELEASING, 0, 1, 4),     # step 1: one more candidate replica asked, previous kept
        (5, 0, 4, None, RELEASING, 0, 1, 4),     # not READY yet: nothing moves (asked is not ready)
        (6, 1, 4, None, RAMPING_UP, 25, 1, 4),   # READY: 1/4 of the traffic
        (15, 1, 4, None, RAMPING_UP, 25, 1, 4),  # stabilizing (10 s)
        (16, 1, 4, None, RAMPING_UP, 25, 2, 3),  # step 2: candidate up, previous down by the step
        (17, 2, 3, None, RAMPING_UP, 50, 2, 3),
        (27, 2, 3, None, RAMPING_UP, 50, 3, 2),
        (28, 3, 2, None, RAMPING_UP, 75, 3, 2),
        (38, 3, 2, None, RAMPING_UP, 75, 4, 1),
        (39, 4, 1, None, RAMPING_UP, 100, 4, 1),  # the last step carries all the traffic...
        (45, 4, 1, None, RAMPING_UP, 100, 4, 1),  # ...and still stabilizes
        (49, 4, 1, None, SUCCEEDED, 100, None, None),  # overrides end: cleanup and autoscaler take over
    ])


def test_rolling_unavailable_takes_the_previous_down_before_the_candidate_is_ready() -> None:
    plan = Plan("rolling", target_replicas=4, max_surge_percent=0, max_unavailable_percent=50)
    run(plan, [
        (0, 0, 4, None, RELEASING, 0, 2, 2),   # step of 2: the previous gives 2 up at once
        (1, 1, 2, None, RELEASING, 0, 2, 2),   # one READY of two: no traffic yet
        (2, 2, 2, None, RAMPING_UP, 50, 2, 2),
        (3, 2, 2, None, RAMPING_UP, 50, 4, 0),
        (4, 4, 0, None, RAMPING_UP, 100, 4, 0),
        (5, 4, 0, None, SUCCEEDED, 100, None, None),
    ])


@pytest.mark.parametrize("target, surge, step_replicas, steps", [
    (1, 10, 1, 1), (4, 10, 1, 4), (10, 10, 1, 10), (10, 25, 3, 4), (20, 50, 10, 2), (3, 50, 2, 2),
])
def test_a_step_is_the_percent_of_the_target_rounded_up_and_at_least_one_replica(
        target: int, surge: int, step_replicas: int, steps: int) -> None:
    plan = Plan("rolling", target_replicas=target, max_surge_percent=surge)
    assert (plan.step_replicas, plan.steps) == (step_replicas, steps)


def test_replica_overhead_asks_for_more_candidate_capacity_but_traffic_follows_the_step() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50, replica_overhead_percent=50)
    run(plan, [
        (0, 0, 2, None, RELEASING, 0, 2, 2),    # ceil(1 * 1.5) = 2 asked
        (1, 2, 2, None, RAMPING_UP, 50, 2, 2),  # 2 READY but the step's share is 1/2
        (2, 2, 2, None, RAMPING_UP, 100, 3, 1),  # step 2 needs 2 READY: the overhead already has them
        (3, 3, 1, None, SUCCEEDED, 100, None, None),
    ])


def test_pause_waits_for_the_step_boundary_holds_and_resume_goes_on() -> None:
    run(ROLLING_SURGE, [
        (0, 1, 4, None, RAMPING_UP, 25, 1, 4),
        (5, 1, 4, "pause", RAMPING_UP, 25, 1, 4),   # inside the stabilization wait: not yet
        (10, 1, 4, None, PAUSED, 25, 1, 4),         # the boundary: paused before step 2 begins
        (500, 4, 4, None, PAUSED, 25, 1, 4),        # held, whatever is READY
        (501, 1, 4, "resume", RAMPING_UP, 25, 2, 3),  # step 2 begins
        (502, 2, 3, None, RAMPING_UP, 50, 2, 3),
    ])


def test_pause_while_waiting_for_replicas_applies_at_once_and_resume_before_it_applies_undoes_it() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50, stabilization_time_seconds=10)
    state = run(plan, [
        (0, 0, 2, None, RELEASING, 0, 1, 2),
        (1, 0, 2, "pause", PAUSED, 0, 1, 2),  # no traffic moved in this step yet: a boundary
        (2, 1, 2, "resume", RAMPING_UP, 50, 1, 2),
        (3, 1, 2, "pause", RAMPING_UP, 50, 1, 2),  # stabilizing: the pause waits
    ])
    state = control(state, plan, "resume", 4)
    assert state.requested_action is None and state.status == RAMPING_UP
    with pytest.raises(ControlRefused, match="not paused"):
        control(state, plan, "resume", 5)


def test_cancel_ramps_back_at_the_step_boundary_as_the_previous_comes_back() -> None:
    run(ROLLING_SURGE, [
        (0, 1, 4, None, RAMPING_UP, 25, 1, 4),
        (10, 1, 4, None, RAMPING_UP, 25, 2, 3),
        (11, 2, 3, None, RAMPING_UP, 50, 2, 3),
        (12, 2, 3, "cancel", RAMPING_UP, 50, 2, 3),  # stabilizing: waits for the boundary
        (21, 2, 3, None, RAMPING_DOWN, 50, 2, 4),    # all of the previous asked back; candidate kept
        (22, 2, 3, None, RAMPING_DOWN, 25, 2, 4),    # 3 of 4 READY: 75 % back
        (23, 2, 4, None, CANCELED, 0, None, None),
    ])


def test_a_pause_before_the_first_step_holds_without_asking_for_replicas() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50)
    paused = step(control(RolloutState(), plan, "pause", 0), Observed(0, 2), plan, 0)
    assert (paused.state.status, paused.candidate_replicas, paused.previous_replicas) == (PAUSED, None, None)
    resumed = step(control(paused.state, plan, "resume", 1), Observed(0, 2), plan, 1)
    assert (resumed.state.status, resumed.candidate_replicas, resumed.previous_replicas) == (RELEASING, 1, 2)


def test_ramping_down_waits_for_the_previous_however_long_unless_the_candidate_fails() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50, ready_timeout_seconds=60)
    state = run(plan, [
        (0, 1, 2, None, RAMPING_UP, 50, 1, 2),
        (1, 1, 2, "cancel", RAMPING_DOWN, 50, 1, 2),  # no stabilization wait: the boundary is now
        (2, 1, 0, None, RAMPING_DOWN, 50, 1, 2),      # the previous lost its replicas meanwhile
        (5000, 1, 0, None, RAMPING_DOWN, 50, 1, 2),   # no timeout: the candidate keeps its share
        (5001, 1, 1, None, RAMPING_DOWN, 50, 1, 2),   # half of the previous back: min(50, 100-50)
    ])
    run(plan, [(5002, 0, 1, None, FAILED, 0, None, None)], state=state, failed={5002: "DEPLOY_FAILED"})


def test_cancel_before_any_traffic_moved_is_canceled_at_once() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50)
    state = run(plan, [(0, 0, 2, None, RELEASING, 0, 1, 2)])
    assert control(state, plan, "cancel", 1).status == CANCELED


@pytest.mark.parametrize("action, status, percent", [("force_cancel", CANCELED, 0),
                                                     ("force_roll_forward", SUCCEEDED, 100)])
def test_force_controls_apply_at_once_even_inside_a_stabilization_wait(action: str, status: str, percent: int) -> None:
    state = run(ROLLING_SURGE, [(0, 1, 4, None, RAMPING_UP, 25, 1, 4)])
    run(ROLLING_SURGE, [(1, 1, 4, action, status, percent, None, None)], state=state)


def test_a_failed_candidate_ends_failed_with_all_traffic_on_the_previous() -> None:
    run(ROLLING_SURGE, [
        (0, 1, 4, None, RAMPING_UP, 25, 1, 4),
        (10, 1, 4, None, RAMPING_UP, 25, 2, 3),
        (11, 1, 3, None, FAILED, 0, None, None),
    ], failed={11: "DEPLOY_FAILED: load() raised"})


def test_a_candidate_never_ready_fails_after_the_ready_timeout() -> None:
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50, ready_timeout_seconds=60)
    state = run(plan, [
        (0, 0, 2, None, RELEASING, 0, 1, 2),
        (59, 0, 2, None, RELEASING, 0, 1, 2),
        (60, 0, 2, None, FAILED, 0, None, None),
    ])
    assert "did not become ready within 60 s" in state.error_message


def test_canary_waits_for_the_min_replicas_then_moves_in_ten_equal_stages() -> None:
    plan = Plan("canary", ramp_up_duration_seconds=100, canary_min_replicas=2)
    run(plan, [
        (0, 1, 2, None, RELEASING, 0, 2, None),  # asked for the previous's min replicas
        (5, 2, 2, None, RAMPING_UP, 10, None, None),  # stage 1 at once
        (14, 2, 2, None, RAMPING_UP, 10, None, None),
        (15, 2, 2, None, RAMPING_UP, 20, None, None),
        (55, 2, 2, None, RAMPING_UP, 60, None, None),
        (104, 2, 2, None, RAMPING_UP, 100, None, None),  # stage 10
        (105, 2, 2, None, SUCCEEDED, 100, None, None),   # the whole window passed
    ])


def test_canary_cancel_returns_all_traffic_at_once_and_cannot_be_paused() -> None:
    plan = Plan("canary", ramp_up_duration_seconds=100, canary_min_replicas=1)
    state = run(plan, [(0, 1, 1, None, RAMPING_UP, 10, None, None), (30, 1, 1, None, RAMPING_UP, 40, None, None)])
    with pytest.raises(ControlRefused, match="only a rolling promotion can be paused"):
        control(state, plan, "pause", 31)
    assert (control(state, plan, "cancel", 31).status, control(state, plan, "cancel", 31).percent) == (CANCELED, 0)


def test_instant_moves_everything_when_the_candidate_is_active() -> None:
    plan = Plan("instant")
    state = RolloutState(phase_since=0)
    decision = step(state, Observed(candidate_active=False), plan, 1)
    assert (decision.state.status, decision.percent) == (RELEASING, 0)
    decision = step(decision.state, Observed(candidate_active=True), plan, 2)
    assert (decision.state.status, decision.percent, decision.finished) == (SUCCEEDED, 100, True)


@pytest.mark.parametrize("action", ["pause", "resume", "cancel", "force_cancel", "force_roll_forward"])
def test_a_finished_promotion_refuses_every_control(action: str) -> None:
    with pytest.raises(ControlRefused, match="already ended"):
        control(RolloutState(status=SUCCEEDED, percent=100), ROLLING_SURGE, action, 0)


def test_an_unknown_control_names_the_ones_that_exist() -> None:
    with pytest.raises(ControlRefused, match="cancel, force_cancel, force_roll_forward, pause, resume"):
        control(RolloutState(), ROLLING_SURGE, "stop", 0)


def test_a_finished_state_stays_finished() -> None:
    decision = step(RolloutState(status=CANCELED), Observed(4, 4), ROLLING_SURGE, 0)
    assert (decision.state.status, decision.candidate_replicas, decision.previous_replicas) == (CANCELED, None, None)


def test_a_control_asked_during_the_last_steps_wait_applies_at_its_end_rather_than_the_finish() -> None:
    """The end of the last stabilization wait is a step boundary too: a cancel asked during it
    ramps back (the API answered RAMPING_DOWN), a pause holds at 100 %; neither is dropped by the
    finish. Resumed, the promotion then ends SUCCEEDED."""
    plan = Plan("rolling", target_replicas=2, max_surge_percent=50, stabilization_time_seconds=10)
    before_the_end = [
        (0, 1, 2, None, RAMPING_UP, 50, 1, 2),
        (10, 1, 2, None, RAMPING_UP, 50, 2, 1),
        (11, 2, 1, None, RAMPING_UP, 100, 2, 1),  # the last step: stabilizing until 21
    ]
    run(plan, before_the_end + [
        (15, 2, 1, "cancel", RAMPING_UP, 100, 2, 1),  # pending until the wait ends
        (21, 2, 1, None, RAMPING_DOWN, 100, 2, 2),    # not SUCCEEDED: the previous asked back
        (22, 2, 2, None, CANCELED, 0, None, None),
    ])
    state = run(plan, before_the_end + [
        (15, 2, 1, "pause", RAMPING_UP, 100, 2, 1),
        (21, 2, 1, None, PAUSED, 100, 2, 1),
    ])
    run(plan, [(30, 2, 1, "resume", SUCCEEDED, 100, None, None)], state=state)
