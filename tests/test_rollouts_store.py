"""Promotions on a real store (SQLite and PostgreSQL): begin_promotion's rules, the per-tick
driver walking a rolling promotion on READY replica rows, the controls, and what a finish does
to the environment and the previous deployment."""

from __future__ import annotations

import pytest

from promotion_support import put_environment, ready_replicas
from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane import rollouts
from truss_cli.controlplane.store import Conflict, NotFound, Store, states

ROLLING = {"rolling_deploy": True,
           "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 30}}


def two_deployments(store: Store, replicas: int = 2, settings: dict | None = None):
    model = store.models.create("hello")
    v1 = store.deployments.create(model.id, config={}, status=states.ACTIVE, desired_replicas=replicas)
    v2 = store.deployments.create(model.id, config={}, status=states.ACTIVE, desired_replicas=1)
    put_environment(store, model.id, "production", v1.id, settings)
    return model, v1, v2


def current(store: Store, model_id: str, name: str) -> str | None:
    return rollouts.promotions_of(store).environment(model_id, name).current_deployment_id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_instant_promotion_of_an_active_deployment_is_done_at_once_and_scales_the_previous_down(store: Store):
    model, v1, v2 = two_deployments(store)
    promotion = rollouts.begin_promotion(store, model.id, "production", v2.id)
    assert (promotion.kind, promotion.status, promotion.percent_traffic_to_new_version) == ("instant", "SUCCEEDED", 100)
    assert promotion.finished_at is not None and current(store, model.id, "production") == v2.id
    after_v1, after_v2 = store.deployments.get_by_id(v1.id), store.deployments.get_by_id(v2.id)
    assert (after_v2.is_production, after_v2.environment, after_v1.is_production, after_v1.environment) == (
        True, "production", False, None)
    assert after_v1.desired_replicas == 0  # SCALE_TO_ZERO, the default cleanup


def test_scale_down_previous_false_keeps_it_and_deactivate_stops_it(store: Store):
    model, v1, v2 = two_deployments(store)
    rollouts.begin_promotion(store, model.id, "production", v2.id, scale_down_previous=False)
    assert store.deployments.get_by_id(v1.id).desired_replicas == 2
    put_environment(store, model.id, "production", v2.id, {"promotion_cleanup_strategy": "DEACTIVATE"})
    rollouts.begin_promotion(store, model.id, "production", v1.id)
    assert store.deployments.get_by_id(v2.id).desired_state == states.DESIRED_INACTIVE


def test_begin_refuses_what_cannot_be_promoted_and_says_what_to_do(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    with pytest.raises(NotFound) as caught:
        rollouts.begin_promotion(store, model.id, "staging", v2.id)
    assert caught.value.existing == ["production"]
    with pytest.raises(NotFound) as caught:
        rollouts.begin_promotion(store, model.id, "production", "nosuchid")
    assert f"deployment-2 ({v2.id})" in caught.value.existing
    building = store.deployments.create(model.id, config={})
    with pytest.raises(Conflict, match="is still building"):
        rollouts.begin_promotion(store, model.id, "production", building.id)
    store.deployments.deactivate(v2.id)
    with pytest.raises(Conflict, match="is inactive") as caught:
        rollouts.begin_promotion(store, model.id, "production", v2.id)
    assert "activate it first" in caught.value.hint
    development = store.deployments.create(model.id, config={}, is_development=True, status=states.ACTIVE)
    with pytest.raises(Conflict, match="development deployment cannot be promoted"):
        rollouts.begin_promotion(store, model.id, "production", development.id)
    with pytest.raises(Conflict, match="already serves") as caught:
        rollouts.begin_promotion(store, model.id, "production", v1.id)
    assert caught.value.code == "ALREADY_CURRENT"


def test_one_promotion_per_environment_and_the_refusal_names_the_one_in_progress(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    v3 = store.deployments.create(model.id, config={}, status=states.ACTIVE)
    running = rollouts.begin_promotion(store, model.id, "production", v2.id)
    assert (running.kind, running.status) == ("rolling", "RELEASING")
    with pytest.raises(Conflict) as caught:
        rollouts.begin_promotion(store, model.id, "production", v3.id)
    assert caught.value.code == "PROMOTION_IN_PROGRESS" and v2.id in caught.value.message
    assert "truss rollout cancel" in caught.value.hint


def test_the_driver_rolls_on_ready_replicas_pauses_resumes_and_succeeds(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    ready_replicas(store, v1.id, 2)
    clock = Clock()
    driver = rollouts.Rollouts(store, clock=clock)
    rollouts.begin_promotion(store, model.id, "production", v2.id, now=clock.now)
    env = rollouts.promotions_of(store).environment(model.id, "production")

    def status():
        row = rollouts.promotions_of(store).latest(env.id)
        return (row.status, row.percent_traffic_to_new_version,
                driver.rollout_replicas(v2.id), driver.rollout_replicas(v1.id))

    driver.tick()
    assert status() == ("RELEASING", 0, 1, 2)  # step 1 of 2 asked; nothing READY
    ready_replicas(store, v2.id, 1)
    driver.tick()
    assert status() == ("RAMPING_UP", 50, 1, 2)
    assert rollouts.apply_control(store, model.id, "production", "pause", now=clock.now).requested_action == "pause"
    clock.now += 30
    driver.tick()
    assert status() == ("PAUSED", 50, 1, 2)  # at the boundary, held
    clock.now += 300
    driver.tick()
    assert status() == ("PAUSED", 50, 1, 2)
    assert rollouts.apply_control(store, model.id, "production", "resume", now=clock.now).status == "RAMPING_UP"
    driver.tick()
    assert status() == ("RAMPING_UP", 50, 2, 1)  # step 2: the previous gives its step up
    ready_replicas(store, v2.id, 2)
    ready_replicas(store, v1.id, 1)
    driver.tick()
    assert status() == ("RAMPING_UP", 100, 2, 1)
    assert current(store, model.id, "production") == v1.id  # not before the end
    clock.now += 30
    driver.tick()
    assert status() == ("SUCCEEDED", 100, None, None)
    assert current(store, model.id, "production") == v2.id
    assert store.deployments.get_by_id(v2.id).is_production
    assert store.deployments.get_by_id(v1.id).desired_replicas == 0


def test_cancel_ramps_down_then_cancels_and_production_never_moved(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    ready_replicas(store, v1.id, 2)
    clock = Clock()
    driver = rollouts.Rollouts(store, clock=clock)
    promotion = rollouts.begin_promotion(store, model.id, "production", v2.id, now=clock.now)
    driver.tick()
    ready_replicas(store, v2.id, 1)
    driver.tick()
    assert rollouts.apply_control(store, model.id, "production", "cancel", now=clock.now).requested_action == "cancel"
    clock.now += 30
    driver.tick()
    row = rollouts.promotions_of(store).get(promotion.id)
    assert (row.status, driver.rollout_replicas(v1.id)) == ("RAMPING_DOWN", 2)
    driver.tick()  # both of v1's replicas READY: all traffic back
    row = rollouts.promotions_of(store).get(promotion.id)
    assert (row.status, row.percent_traffic_to_new_version, row.finished_at is not None) == ("CANCELED", 0, True)
    assert current(store, model.id, "production") == v1.id and store.deployments.get_by_id(v1.id).is_production
    with pytest.raises(Conflict, match="no promotion in progress") as caught:
        rollouts.apply_control(store, model.id, "production", "resume")
    assert caught.value.code == "NO_PROMOTION_IN_PROGRESS"


def test_a_failing_candidate_ends_failed_and_the_environment_keeps_the_previous(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    driver = rollouts.Rollouts(store, clock=Clock())
    promotion = rollouts.begin_promotion(store, model.id, "production", v2.id)
    store.deployments.set_status(v2.id, states.DEPLOY_FAILED, "load() raised RuntimeError: boom")
    driver.tick()
    row = rollouts.promotions_of(store).get(promotion.id)
    assert (row.status, row.percent_traffic_to_new_version) == ("FAILED", 0)
    assert "DEPLOY_FAILED: load() raised RuntimeError: boom" in row.error_message
    assert current(store, model.id, "production") == v1.id


@pytest.mark.parametrize("action, status, now_current", [("force_cancel", "CANCELED", 0),
                                                         ("force_roll_forward", "SUCCEEDED", 1)])
def test_force_controls_finish_at_once(store: Store, action: str, status: str, now_current: int):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    rollouts.begin_promotion(store, model.id, "production", v2.id)
    row = rollouts.apply_control(store, model.id, "production", action)
    assert (row.status, row.finished_at is not None) == (status, True)
    assert current(store, model.id, "production") == (v1.id, v2.id)[now_current]


def test_a_control_that_does_not_apply_is_refused_with_its_reason(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    rollouts.begin_promotion(store, model.id, "production", v2.id)
    with pytest.raises(rollouts.ControlRefused, match="not paused") as caught:
        rollouts.apply_control(store, model.id, "production", "resume")
    assert caught.value.code == "PROMOTION_CONTROL_REFUSED"


def test_a_tick_that_lost_the_race_to_a_control_does_not_overwrite_it(store: Store):
    model, v1, v2 = two_deployments(store, settings=ROLLING)
    promotion = rollouts.begin_promotion(store, model.id, "production", v2.id)
    promotions = rollouts.promotions_of(store)
    rollouts.apply_control(store, model.id, "production", "pause")
    stale = promotions.save(promotion, status="RAMPING_UP", percent=50, step=1, requested_action=None,
                            error_message=None, settings=promotion.settings, finished=False)
    assert stale is None and promotions.get(promotion.id).requested_action == "pause"
