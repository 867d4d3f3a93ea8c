"""Steering a promotion over a real control plane (process runtime, real HTTP, real replicas):
the promotion is begun through the environment's promote route (production's promotion
settings ask for a rolling deploy), then read and controlled through the API, and the
production endpoint answers from whichever deployment the controls left serving.

The reconciler ticks the rollout driver, so the promotion steps on its own: production has one
replica, so the candidate's step is its one replica (ceil(1 x 50 %) = 1) and, once that is READY,
all traffic moves in that single step; the promotion then holds RAMPING_UP at 100 % through the
hour-long stabilization wait, where controls other than force_* stay pending until the wait
ends (the answers say so). Force cancel and force roll forward take effect at once. Every test
force-cancels what it leaves in progress, so the next one begins afresh.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, ok, opened_store, refused
from controlplane_support import ControlPlaneProcess, running_controlplane
from promotion_support import put_environment
from truss_cli.controlplane import rollouts

ROLLING = {"rolling_deploy": True,
           "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 3600}}

VERSIONED_MODEL = """
class Model:
    def predict(self, request):
        return {"version": VERSION}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("promotions") / "cp") as plane:
        yield plane


@pytest.fixture(scope="module")
def versions(cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`rolled`: two ACTIVE deployments, v1 serving production, v2 not."""
    root = tmp_path_factory.mktemp("models")
    made = {}
    for version in ("v1", "v2"):
        model_dir = write_model_dir(root / version, VERSIONED_MODEL.replace("VERSION", repr(version)),
                                    "model_name: rolled\npython_version: py311\n")
        created = cp.push(model_dir, "rolled")
        deployment = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert deployment["status"] == "ACTIVE", deployment
        made[version] = deployment
    made["model_id"] = made["v1"]["model_id"]
    return made


def begin(cp: ControlPlaneProcess, versions: dict[str, Any], current: str, candidate: str) -> None:
    """`current` serves production, whose promotion settings ask for a rolling deploy; then the
    environment's promote route, as `truss deployments promote --environment production` calls it."""
    with opened_store(cp) as store:
        put_environment(store, versions["model_id"], "production", versions[current]["id"], ROLLING)
    answer = ok(cp.client.post("/v1/models/rolled/environments/production/promote",
                               json={"deployment_id": versions[candidate]["id"]}))
    promotion = answer["in_progress_promotion"]
    assert (promotion["kind"], promotion["status"]) == ("rolling", "RELEASING"), answer


def production_answer(cp: ControlPlaneProcess, model_id: str) -> str:
    return ok(cp.client.post(f"/model-{model_id}/production/predict", json={}))["version"]


def control(cp: ControlPlaneProcess, word: str, status: int = 200) -> dict[str, Any]:
    return ok(cp.client.post(f"/v1/models/rolled/environments/production/{word}"), status)


def promotion_now(cp: ControlPlaneProcess) -> dict[str, Any]:
    return ok(cp.client.get("/v1/models/rolled/environments/production/promotion"))["promotion"]


def stepped(cp: ControlPlaneProcess) -> dict[str, Any]:
    """The promotion once the driver took its (single) step: all traffic on the READY candidate."""
    eventually(lambda: (promotion_now(cp)["status"], promotion_now(cp)["percent_traffic_to_new_version"]) == (
        "RAMPING_UP", 100), timeout=30)
    return promotion_now(cp)


def force_cancel_leftover(cp: ControlPlaneProcess, versions: dict[str, Any]) -> None:
    """Never leave a promotion in progress for the next test."""
    with opened_store(cp) as store:
        env = rollouts.promotions_of(store).environment(versions["model_id"], "production")
        if rollouts.promotions_of(store).unfinished(env.id):
            rollouts.apply_control(store, versions["model_id"], "production", "force_cancel")


def test_the_promotion_steps_on_its_own_and_holds_through_the_stabilization_wait(
        cp: ControlPlaneProcess, versions: dict[str, Any]):
    begin(cp, versions, "v1", "v2")
    try:
        promotion = stepped(cp)
        assert (promotion["kind"], promotion["step"], promotion["steps"]) == ("rolling", 1, 1), promotion
        assert (promotion["candidate_deployment"]["id"], promotion["previous_deployment"]["id"]) == (
            versions["v2"]["id"], versions["v1"]["id"])
        assert promotion["candidate_deployment"]["ready_replicas"] == 1  # its own replica, READY
        assert promotion["previous_deployment"]["ready_replicas"] == 1  # kept until the wait ends
        assert promotion["finished_at"] is None  # the hour's stabilization wait holds it here
        # The phase and its timing, from the promotion's own plan and computed by the server.
        assert (promotion["phase"], promotion["stabilization_time_seconds"]) == ("stabilizing", 3600), promotion
        assert promotion["ramp_up_duration_seconds"] is None  # a canary's only
        assert 3000 <= promotion["seconds_left_in_phase"] <= 3600, promotion
        assert promotion["seconds_in_phase"] + promotion["seconds_left_in_phase"] == pytest.approx(3600, abs=0.2)
        assert datetime.fromisoformat(promotion["phase_since"]) >= datetime.fromisoformat(promotion["created_at"])
        # The gateway's routing table follows the split at the reconciler's next tick.
        eventually(lambda: production_answer(cp, versions["model_id"]) == "v2", timeout=30)
        paused = control(cp, "pause_promotion")  # inside the wait: pending until it ends
        assert (paused["status"], paused["promotion"]["requested_action"]) == ("PAUSED", "pause")
        assert paused["promotion"]["status"] == "RAMPING_UP"
        # Still the same wait, started when the traffic moved, not when the pause was asked.
        assert (paused["promotion"]["phase"], paused["promotion"]["phase_since"]) == (
            "stabilizing", promotion["phase_since"])
        resumed = control(cp, "resume_promotion")  # before the pause applied: it is undone
        assert (resumed["status"], resumed["promotion"]["requested_action"]) == ("RAMPING_UP", None)
        refused(cp.client.post("/v1/models/rolled/environments/production/resume_promotion"), 409,
                "PROMOTION_CONTROL_REFUSED")
        canceling = control(cp, "cancel_promotion")  # traffic moved: a ramp down, at the wait's end
        assert (canceling["status"], canceling["promotion"]["requested_action"]) == ("RAMPING_DOWN", "cancel")
        assert (promotion_now(cp)["status"], promotion_now(cp)["percent_traffic_to_new_version"]) == (
            "RAMPING_UP", 100)
        canceled = control(cp, "force_cancel_promotion")
        assert (canceled["status"], canceled["promotion"]["percent_traffic_to_new_version"]) == ("CANCELED", 0)
        assert canceled["promotion"]["seconds_left_in_phase"] is None  # over: no wait left
    finally:
        force_cancel_leftover(cp, versions)
    eventually(lambda: production_answer(cp, versions["model_id"]) == "v1", timeout=30)


def test_with_two_replicas_the_first_step_moves_half_the_traffic_and_holds(
        cp: ControlPlaneProcess, versions: dict[str, Any]):
    """T = 2 replicas (v1's min_replica), step ceil(2 x 50 %) = 1: step 1 of 2 asks v2 for one
    replica (it has it, READY) while v1 keeps both; half the traffic moves, and the hour's
    stabilization wait holds it there."""
    settings = f"/v1/models/rolled/deployments/{versions['v1']['id']}/autoscaling_settings"
    own = ok(cp.client.get(settings))["autoscaling_settings"]
    ok(cp.client.patch(settings, json={"min_replica": 2, "max_replica": 2}))
    try:
        begin(cp, versions, "v1", "v2")
        eventually(lambda: (promotion_now(cp)["status"], promotion_now(cp)["percent_traffic_to_new_version"]) == (
            "RAMPING_UP", 50), timeout=30)
        promotion = promotion_now(cp)
        assert (promotion["step"], promotion["steps"]) == (1, 2), promotion
        assert promotion["candidate_deployment"]["rollout_replicas"] == 1
        assert promotion["previous_deployment"]["rollout_replicas"] == 2  # v1 gives none up before the wait ends
        answers: set[str] = set()

        def both_answer() -> bool:  # the split sends some requests to each
            answers.add(production_answer(cp, versions["model_id"]))
            return answers == {"v1", "v2"}

        eventually(both_answer, timeout=60)
        assert (promotion_now(cp)["status"], promotion_now(cp)["percent_traffic_to_new_version"]) == (
            "RAMPING_UP", 50)  # still held
    finally:
        force_cancel_leftover(cp, versions)
        ok(cp.client.patch(settings, json={"min_replica": own["min_replica"], "max_replica": own["max_replica"]}))
    eventually(lambda: production_answer(cp, versions["model_id"]) == "v1", timeout=30)


def test_force_roll_forward_serves_the_candidate_and_force_cancel_keeps_the_previous(
        cp: ControlPlaneProcess, versions: dict[str, Any]):
    try:
        begin(cp, versions, "v1", "v2")
        stepped(cp)
        eventually(lambda: production_answer(cp, versions["model_id"]) == "v2", timeout=30)
        answer = control(cp, "force_cancel_promotion")
        assert (answer["status"], answer["promotion"]["percent_traffic_to_new_version"]) == ("CANCELED", 0)
        # The routing table follows at the reconciler's next tick: v1 serves production again.
        eventually(lambda: production_answer(cp, versions["model_id"]) == "v1", timeout=30)

        begin(cp, versions, "v1", "v2")
        answer = control(cp, "force_roll_forward_promotion")
        assert (answer["status"], answer["promotion"]["percent_traffic_to_new_version"]) == ("SUCCEEDED", 100)
    finally:
        force_cancel_leftover(cp, versions)
    deployment = ok(cp.client.get(f"/v1/models/rolled/deployments/{versions['v2']['id']}"))
    assert deployment["is_production"] is True
    eventually(lambda: production_answer(cp, versions["model_id"]) == "v2", timeout=30)
    status = ok(cp.client.get("/v1/models/rolled/environments/production/promotion"))
    assert status["current_deployment_id"] == versions["v2"]["id"]
    assert status["promotion"]["status"] == "SUCCEEDED"


def test_controls_without_a_promotion_or_environment_say_what_exists(cp: ControlPlaneProcess,
                                                                    versions: dict[str, Any]):
    body = refused(cp.client.post("/v1/models/rolled/environments/production/pause_promotion"), 409,
                   "NO_PROMOTION_IN_PROGRESS")
    assert "no promotion in progress" in body["error"]
    body = refused(cp.client.get("/v1/models/rolled/environments/staging/promotion"), 404, "NOT_FOUND")
    assert body["detail"]["existing"] == ["production"]
    refused(cp.client.post("/v1/models/nosuchmodel/environments/production/cancel_promotion"), 404, "NOT_FOUND")
