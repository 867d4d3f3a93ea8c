"""The promotion paths other than the rolling deploy under load, end to end (issue 11): a real
control plane process, real HTTP, real replicas (process runtime), settings set through the
environment routes as a user sets them (`truss environments update`).

- a candidate whose `load()` raises ends FAILED, saying why, while the previous deployment
  serves every request of a steady trickle and stays the environment's deployment;
- a rolling promotion with three steps runs to SUCCEEDED on the real clock, its reported step
  and split only ever going up and never ahead of the candidate's READY replicas; the previous
  deployment gets the cleanup asked for (KEEP, then DEACTIVATE);
- an environment's own autoscaling_settings apply to the deployment serving it (no redeploy),
  and to the next one promoted into it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, ok, opened_store
from controlplane_support import ControlPlaneProcess, running_controlplane
from trickle import Trickle

MODEL = "paths"
VERSIONED_MODEL = """
class Model:
    def predict(self, request):
        return {"version": VERSION}
"""
# load() waits for a gate file, then fails: the test holds the candidate LOADING while it
# promotes it, and decides when its load fails (no sleeps to race against).
FAILING_LOAD = """
import os
import time


class Model:
    def load(self):
        while not os.path.exists(GATE):
            time.sleep(0.05)
        raise RuntimeError("the weights are missing")

    def predict(self, request):
        return {"version": "broken"}
"""
CONFIG = f"model_name: {MODEL}\npython_version: py311\n"
FINAL = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("rollout-paths") / "cp") as plane:
        yield plane


def push(cp: ControlPlaneProcess, root: Path, name: str, source: str, **options: Any) -> dict[str, Any]:
    created = cp.push(write_model_dir(root / name, source, CONFIG), MODEL, **options)
    deployment = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
    assert deployment["status"] == "ACTIVE", deployment
    return deployment


def versioned(version: str) -> str:
    return VERSIONED_MODEL.replace("VERSION", repr(version))


@pytest.fixture(scope="module")
def made(cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 (the model's first deployment: production) and v2, both ACTIVE."""
    root = tmp_path_factory.mktemp("models")
    found: dict[str, Any] = {"root": root}
    for version in ("v1", "v2"):
        found[version] = push(cp, root, version, versioned(version))
    found["model_id"] = found["v1"]["model_id"]
    return found


def environment(cp: ControlPlaneProcess, name: str = "production") -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{MODEL}/environments/{name}"))


def update_environment(cp: ControlPlaneProcess, name: str = "production", **settings: Any) -> dict[str, Any]:
    return ok(cp.client.patch(f"/v1/models/{MODEL}/environments/{name}", json=settings))


def promote(cp: ControlPlaneProcess, deployment_id: str, name: str = "production", **options: Any) -> dict[str, Any]:
    return ok(cp.client.post(f"/v1/models/{MODEL}/environments/{name}/promote",
                             json={"deployment_id": deployment_id, **options}))


def promotion_now(cp: ControlPlaneProcess, name: str = "production") -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{MODEL}/environments/{name}/promotion"))["promotion"]


def deployment(cp: ControlPlaneProcess, deployment_id: str) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{MODEL}/deployments/{deployment_id}"))


def answer(cp: ControlPlaneProcess, model_id: str, target: str = "production") -> str:
    return ok(cp.client.post(f"/model-{model_id}/{target}/predict", json={}))["version"]


def serving(cp: ControlPlaneProcess, made: dict[str, Any], version: str) -> None:
    """Production serves `version`, promoted instantly (the settings say instant) if need be."""
    update_environment(cp, promotion_settings={"rolling_deploy": False, "ramp_up_while_promoting": False})
    if (environment(cp)["current_deployment"] or {}).get("id") != made[version]["id"]:
        promote(cp, made[version]["id"])
    eventually(lambda: answer(cp, made["model_id"]) == version, timeout=60)


def test_a_candidate_whose_load_fails_ends_failed_while_the_previous_serves_throughout(
        cp: ControlPlaneProcess, made: dict[str, Any]):
    serving(cp, made, "v1")
    update_environment(cp, promotion_settings={
        "rolling_deploy": True, "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 1}})
    gate = made["root"] / "broken-gate"
    created = cp.push(write_model_dir(made["root"] / "broken", FAILING_LOAD.replace("GATE", repr(str(gate))), CONFIG),
                      MODEL)
    # Built, its replica inside load(): promotable (not BUILDING), not ready.
    loading = cp.wait_for_status(made["model_id"], created["id"], "LOADING_MODEL", *FINAL)
    assert loading["status"] == "LOADING_MODEL", loading
    with Trickle(cp, f"/model-{made['model_id']}/production/predict") as trickle:
        begun = promote(cp, created["id"])["in_progress_promotion"]
        assert (begun["kind"], begun["status"], begun["percent_traffic_to_new_version"]) == (
            "rolling", "RELEASING", 0), begun
        eventually(lambda: len(trickle.answers) >= 5, timeout=60)  # requests flow during the promotion
        gate.touch()  # now load() raises
        eventually(lambda: promotion_now(cp)["status"] in ("FAILED", "SUCCEEDED", "CANCELED"), timeout=120)
        ended_at = len(trickle.answers)
        eventually(lambda: len(trickle.answers) >= ended_at + 5, timeout=60)  # and after it ended
    failed = promotion_now(cp)
    assert (failed["status"], failed["percent_traffic_to_new_version"]) == ("FAILED", 0), failed
    assert "DEPLOY_FAILED" in failed["error_message"] and "the weights are missing" in failed["error_message"], failed
    assert failed["finished_at"] is not None
    assert deployment(cp, created["id"])["status"] == "DEPLOY_FAILED"
    after = environment(cp)
    assert after["current_deployment"]["id"] == made["v1"]["id"]
    assert (after["candidate_deployment"], after["in_progress_promotion"]) == (None, None)
    assert deployment(cp, made["v1"]["id"])["is_production"] is True
    # Every request of the trickle answered, all by v1: the failing candidate never got one.
    assert trickle.answers and set(trickle.answers) == {(200, "v1")}, [a for a in trickle.answers if a != (200, "v1")]
    assert answer(cp, made["model_id"]) == "v1"


def observe_until_finished(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    """Every promotion view read until it ends (polled a few times a second)."""
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(promotion_now(cp))
        return seen[-1]["status"] in ("SUCCEEDED", "FAILED", "CANCELED")

    eventually(finished, timeout=240)
    return seen


def assert_rolled_in_steps(seen: list[dict[str, Any]], target: int, steps: int) -> None:
    """RELEASING -> RAMPING_UP ... -> SUCCEEDED; step and split never go back; the split never
    ahead of the candidate's READY replicas; each step's share seen (a step holds for its
    stabilization wait, longer than the polling interval)."""
    statuses = [view["status"] for view in seen]
    assert statuses[-1] == "SUCCEEDED", statuses
    assert set(statuses) <= {"RELEASING", "RAMPING_UP", "SUCCEEDED"}, statuses
    assert "RAMPING_UP" in statuses
    assert statuses.index("RAMPING_UP") > max((i for i, s in enumerate(statuses) if s == "RELEASING"), default=-1)
    assert {view["steps"] for view in seen} == {steps}
    percents = [view["percent_traffic_to_new_version"] for view in seen]
    step_numbers = [view["step"] for view in seen]
    assert percents == sorted(percents) and step_numbers == sorted(step_numbers), (percents, step_numbers)
    shares = [100 * k // target for k in range(1, steps)] + [100]
    assert sorted(set(percents) - {0}) == shares, percents
    for view in seen[:-1]:  # traffic follows READY capacity, not what was asked for
        needed = math.ceil(view["percent_traffic_to_new_version"] * target / 100)
        assert view["candidate_deployment"]["ready_replicas"] >= needed, view


def test_a_rolling_promotion_runs_every_step_to_succeeded_and_cleans_up_the_previous(
        cp: ControlPlaneProcess, made: dict[str, Any]):
    """Production at three replicas (its own autoscaling settings), 33 % surge: steps of one
    replica, three of them (33 %, 66 %, 100 %). v1 -> v2 keeping v1 (scale_down_previous_deployment
    false), then v2 -> v1 with the DEACTIVATE strategy."""
    serving(cp, made, "v1")
    update_environment(cp, autoscaling_settings={"min_replica": 3, "max_replica": 3})
    try:
        eventually(lambda: deployment(cp, made["v1"]["id"])["active_replica_count"] == 3, timeout=120)
        update_environment(cp, promotion_settings={
            "rolling_deploy": True, "promotion_cleanup_strategy": "SCALE_TO_ZERO",
            "rolling_deploy_config": {"max_surge_percent": 33, "stabilization_time_seconds": 2}})

        begun = promote(cp, made["v2"]["id"], scale_down_previous_deployment=False)["in_progress_promotion"]
        assert (begun["status"], begun["steps"], begun["cleanup"]) == ("RELEASING", 3, "KEEP"), begun
        assert_rolled_in_steps([begun] + observe_until_finished(cp), target=3, steps=3)
        assert environment(cp)["current_deployment"]["id"] == made["v2"]["id"]
        assert deployment(cp, made["v2"]["id"])["is_production"] is True
        eventually(lambda: answer(cp, made["model_id"]) == "v2", timeout=60)
        # KEEP: v1 still runs and answers at its own URL, outside production.
        kept = deployment(cp, made["v1"]["id"])
        assert (kept["status"], kept["desired_state"], kept["is_production"]) == ("ACTIVE", "active", False), kept
        assert kept["replicas"] >= 1
        assert answer(cp, made["model_id"], f"deployment/{made['v1']['id']}") == "v1"
        # The candidate now follows production's settings: three replicas.
        eventually(lambda: deployment(cp, made["v2"]["id"])["active_replica_count"] == 3, timeout=120)

        update_environment(cp, promotion_settings={"promotion_cleanup_strategy": "DEACTIVATE"})
        begun = promote(cp, made["v1"]["id"])["in_progress_promotion"]
        assert (begun["status"], begun["steps"], begun["cleanup"]) == ("RELEASING", 3, "DEACTIVATE"), begun
        assert_rolled_in_steps([begun] + observe_until_finished(cp), target=3, steps=3)
        assert environment(cp)["current_deployment"]["id"] == made["v1"]["id"]
        eventually(lambda: answer(cp, made["model_id"]) == "v1", timeout=60)
        eventually(lambda: deployment(cp, made["v2"]["id"])["status"] == "INACTIVE", timeout=120)
        assert deployment(cp, made["v2"]["id"])["desired_state"] == "inactive"
    finally:
        update_environment(cp, autoscaling_settings=None)
        if deployment(cp, made["v2"]["id"])["desired_state"] == "inactive":
            ok(cp.client.post(f"/v1/models/{MODEL}/deployments/{made['v2']['id']}/activate"))


def test_rolling_back_to_a_deployment_the_last_promotion_scaled_to_zero_wakes_it(
        cp: ControlPlaneProcess, made: dict[str, Any]):
    """The rollback path: v1 -> v2 scales v1 to zero (the default cleanup); promoting v1 back
    with a rolling deploy must bring v1's replicas up (no request reaches it while it has 0 %
    of the traffic, so nothing else would wake it) and end SUCCEEDED."""
    serving(cp, made, "v1")
    update_environment(cp, promotion_settings={
        "rolling_deploy": True, "promotion_cleanup_strategy": "SCALE_TO_ZERO",
        "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 1}})
    promote(cp, made["v2"]["id"])
    assert observe_until_finished(cp)[-1]["status"] == "SUCCEEDED"
    eventually(lambda: deployment(cp, made["v1"]["id"])["status"] == "SCALED_TO_ZERO", timeout=60)

    begun = promote(cp, made["v1"]["id"])["in_progress_promotion"]
    assert begun["status"] == "RELEASING", begun
    ended = observe_until_finished(cp)[-1]
    assert (ended["status"], ended["percent_traffic_to_new_version"]) == ("SUCCEEDED", 100), ended
    assert environment(cp)["current_deployment"]["id"] == made["v1"]["id"]
    eventually(lambda: answer(cp, made["model_id"]) == "v1", timeout=60)


def ready_replica_ids(cp: ControlPlaneProcess, deployment_id: str) -> set[str]:
    with opened_store(cp) as store:
        return {r.id for r in store.replicas.list(deployment_id) if r.phase == "ready"}


def test_an_environments_own_autoscaling_settings_apply_to_the_deployment_serving_it(
        cp: ControlPlaneProcess, made: dict[str, Any]):
    """staging's autoscaling_settings (min 2) over its deployment's own (the defaults, min 0 /
    max 1): the deployment serving staging runs two replicas without a redeploy (its first
    replica keeps serving), and the next deployment promoted into staging follows them too;
    the one it replaced scales to zero (the default cleanup), back on its own settings."""
    ok(cp.client.post(f"/v1/models/{MODEL}/environments", json={"name": "staging"}), 201)
    first = push(cp, made["root"], "s1", versioned("s1"), environment="staging")
    eventually(lambda: (environment(cp, "staging")["current_deployment"] or {}).get("id") == first["id"], timeout=60)
    assert answer(cp, made["model_id"], "environments/staging") == "s1"
    before = ready_replica_ids(cp, first["id"])
    assert len(before) == 1

    updated = update_environment(cp, "staging", autoscaling_settings={"min_replica": 2, "max_replica": 2})
    assert updated["status"] == "ACCEPTED"
    assert (updated["autoscaling_settings"]["min_replica"], updated["autoscaling_settings"]["max_replica"]) == (2, 2)
    eventually(lambda: len(ready_replica_ids(cp, first["id"])) == 2, timeout=120)
    assert before <= ready_replica_ids(cp, first["id"])  # no redeploy: its first replica still serves
    scaled = deployment(cp, first["id"])
    assert (scaled["replicas"], scaled["active_replica_count"], scaled["status"]) == (2, 2, "ACTIVE"), scaled
    own = ok(cp.client.get(f"/v1/models/{MODEL}/deployments/{first['id']}/autoscaling_settings"))
    assert (own["autoscaling_settings"]["min_replica"], own["effective_autoscaling_settings"]["min_replica"]) == (0, 2)
    # Production's deployment keeps its own (one replica).
    assert deployment(cp, environment(cp)["current_deployment"]["id"])["replicas"] == 1

    second = push(cp, made["root"], "s2", versioned("s2"))
    assert deployment(cp, second["id"])["replicas"] == 1  # its own settings while it serves nothing
    promote(cp, second["id"], "staging")
    eventually(lambda: len(ready_replica_ids(cp, second["id"])) == 2, timeout=120)
    assert deployment(cp, second["id"])["replicas"] == 2
    eventually(lambda: answer(cp, made["model_id"], "environments/staging") == "s2", timeout=60)
    eventually(lambda: deployment(cp, first["id"])["status"] == "SCALED_TO_ZERO", timeout=60)
    eventually(lambda: not ready_replica_ids(cp, first["id"]), timeout=60)


def scale_to_zero_now(cp: ControlPlaneProcess, deployment_id: str) -> None:
    """What its autoscaler does after scale_down_delay with no load (min_replica 0), at once."""
    with opened_store(cp) as store:
        store.deployments.set_desired(deployment_id, replicas=0)
    eventually(lambda: deployment(cp, deployment_id)["status"] == "SCALED_TO_ZERO", timeout=60)


def test_a_rolling_promotion_from_a_deployment_at_zero_leaves_it_asleep(cp: ControlPlaneProcess, made: dict[str, Any]):
    """Production's v1 scaled to zero (no load): rolling v2 in (itself at zero: woken) must not
    start a replica of v1 just to hold a share of traffic nobody sends."""
    serving(cp, made, "v1")
    update_environment(cp, promotion_settings={
        "rolling_deploy": True, "promotion_cleanup_strategy": "SCALE_TO_ZERO",
        "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 1}})
    for version in ("v2", "v1"):
        if deployment(cp, made[version]["id"])["status"] != "SCALED_TO_ZERO":
            scale_to_zero_now(cp, made[version]["id"])
    promote(cp, made["v2"]["id"])
    seen = observe_until_finished(cp)
    assert seen[-1]["status"] == "SUCCEEDED", seen[-1]
    assert {(view["previous_deployment"]["status"], view["previous_deployment"]["ready_replicas"])
            for view in seen} == {("SCALED_TO_ZERO", 0)}, seen
    assert deployment(cp, made["v1"]["id"])["status"] == "SCALED_TO_ZERO"
    assert answer(cp, made["model_id"]) == "v2"


def test_a_cancel_ramps_back_to_a_previous_deployment_at_zero_by_waking_it(
        cp: ControlPlaneProcess, made: dict[str, Any]):
    """Production's deployment at zero (no load), one step (T = 1): the candidate takes all the
    traffic; a cancel asked in the step's stabilization wait ramps back at its end. Traffic
    returns only as the previous deployment's replicas are READY, and no request reaches it to
    wake it, so the promotion does; then CANCELED and the previous serves again."""
    serving(cp, made, "v2")
    update_environment(cp, promotion_settings={
        "rolling_deploy": True, "promotion_cleanup_strategy": "SCALE_TO_ZERO",
        "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 10}})
    for version in ("v1", "v2"):
        if deployment(cp, made[version]["id"])["status"] != "SCALED_TO_ZERO":
            scale_to_zero_now(cp, made[version]["id"])
    promote(cp, made["v1"]["id"])
    eventually(lambda: promotion_now(cp)["percent_traffic_to_new_version"] == 100, timeout=60)
    canceling = ok(cp.client.post(f"/v1/models/{MODEL}/environments/production/cancel_promotion"))
    assert (canceling["status"], canceling["promotion"]["requested_action"]) == ("RAMPING_DOWN", "cancel"), canceling
    ended = observe_until_finished(cp)[-1]
    assert (ended["status"], ended["percent_traffic_to_new_version"]) == ("CANCELED", 0), ended
    assert environment(cp)["current_deployment"]["id"] == made["v2"]["id"]
    assert deployment(cp, made["v2"]["id"])["status"] == "ACTIVE"
    eventually(lambda: answer(cp, made["model_id"]) == "v2", timeout=60)


def test_a_force_cancel_holds_for_the_very_next_request(cp: ControlPlaneProcess, made: dict[str, Any]):
    """All traffic on the candidate (one step, held by an hour's stabilization wait); once
    force_cancel_promotion answers CANCELED, every request sent after it is the previous's (the
    control route ticks the reconciler, as the promote routes do). A few rounds: without that
    tick, the first requests after the answer mostly still reach the candidate."""
    serving(cp, made, "v1")
    update_environment(cp, promotion_settings={
        "rolling_deploy": True, "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 3600}})
    for _ in range(3):
        promote(cp, made["v2"]["id"])
        eventually(lambda: promotion_now(cp)["percent_traffic_to_new_version"] == 100, timeout=60)
        eventually(lambda: answer(cp, made["model_id"]) == "v2", timeout=60)
        canceled = ok(cp.client.post(f"/v1/models/{MODEL}/environments/production/force_cancel_promotion"))
        assert (canceled["status"], canceled["promotion"]["percent_traffic_to_new_version"]) == ("CANCELED", 0)
        assert [answer(cp, made["model_id"]) for _ in range(5)] == ["v1"] * 5
