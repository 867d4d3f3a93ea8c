"""Environments end to end (issue 11, first slice): a real control plane process, real HTTP,
real replicas (process runtime).

CRUD and its rules (production exists, cannot be created twice or deleted; names; settings
validated and updated partially; unknown names answered with the existing ones); push into an
environment; each environment's own endpoint; instant promotion with no rebuild and the
previous deployment's cleanup; one promotion per environment at a time; the development
deployment kept out of environments.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, ok, opened_store, refused
from controlplane_support import ControlPlaneProcess, running_controlplane
from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store.database import write_transaction

# Answers with the marker its tree carries, so a test sees which deployment served it.
MARKER_MODEL = """
from pathlib import Path


class Model:
    def predict(self, request):
        return {"marker": (Path(__file__).parent.parent / "data" / "marker.txt").read_text().strip()}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("environments") / "cp") as plane:
        yield plane


def push(cp: ControlPlaneProcess, root: Path, model: str, marker: str, **options: Any) -> dict[str, Any]:
    source = write_model_dir(root / f"{model}-{marker}", MARKER_MODEL, f"model_name: {model}\npython_version: py311\n",
                             {"data/marker.txt": marker})
    created = cp.push(source, model=model, **options)
    deployment = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
    assert deployment["status"] == "ACTIVE", deployment
    return deployment


def marker(cp: ControlPlaneProcess, model_id: str, target: str) -> str:
    return ok(cp.client.post(f"/model-{model_id}/{target}/predict", json={}))["marker"]


def environment(cp: ControlPlaneProcess, model: str, name: str) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{model}/environments/{name}"))


def current_id(cp: ControlPlaneProcess, model: str, name: str) -> str | None:
    current = environment(cp, model, name)["current_deployment"]
    return current["id"] if current else None


def test_environment_crud_and_its_rules(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    v1 = push(cp, tmp_path, "crud", "v1")
    listed = ok(cp.client.get("/v1/models/crud/environments"))["environments"]
    assert [(e["name"], e["current_deployment"]["id"]) for e in listed] == [("production", v1["id"])]
    assert listed[0]["in_progress_promotion"] is None and listed[0]["autoscaling_settings"] is None
    assert listed[0]["promotion_settings"]["promotion_cleanup_strategy"] == "SCALE_TO_ZERO"

    staging = ok(cp.client.post("/v1/models/crud/environments", json={
        "name": "staging", "promotion_settings": {"promotion_cleanup_strategy": "KEEP"}}), 201)
    assert staging["current_deployment"] is None and staging["promotion_settings"]["promotion_cleanup_strategy"] == "KEEP"
    twice = refused(cp.client.post("/v1/models/crud/environments", json={"name": "production"}), 409,
                    "ENVIRONMENT_EXISTS")
    assert "cannot be created twice" in twice["error"]
    refused(cp.client.post("/v1/models/crud/environments", json={"name": "staging"}), 409, "ENVIRONMENT_EXISTS")
    refused(cp.client.post("/v1/models/crud/environments", json={"name": "no good"}), 400, "INVALID_NAME")
    bad = refused(cp.client.post("/v1/models/crud/environments", json={
        "name": "qa", "autoscaling_settings": {"min_replica": 3, "max_replica": 1}}), 400, "INVALID_SETTINGS")
    assert "max_replica" in bad["error"]

    missing = refused(cp.client.get("/v1/models/crud/environments/stagin"), 404, "NOT_FOUND")
    assert missing["detail"]["existing"] == ["production", "staging"]

    changed = ok(cp.client.patch("/v1/models/crud/environments/staging", json={"autoscaling_settings": {"max_replica": 2}}))
    assert changed["status"] == "ACCEPTED" and changed["autoscaling_settings"]["max_replica"] == 2
    assert changed["promotion_settings"]["promotion_cleanup_strategy"] == "KEEP"  # left as it was
    same = ok(cp.client.patch("/v1/models/crud/environments/staging", json={"autoscaling_settings": {"max_replica": 2}}))
    assert same["status"] == "UNCHANGED"
    refused(cp.client.patch("/v1/models/crud/environments/staging", json={
        "promotion_settings": {"rolling_deploy": True, "ramp_up_while_promoting": True}}), 400, "INVALID_SETTINGS")

    refused(cp.client.delete("/v1/models/crud/environments/production"), 409, "PRODUCTION_NOT_DELETABLE")
    empty = refused(cp.client.post("/v1/models/crud/environments/staging/deactivate"), 409, "ENVIRONMENT_EMPTY")
    assert "--environment staging" in empty["detail"]
    assert ok(cp.client.delete("/v1/models/crud/environments/staging"))["deleted"] is True
    refused(cp.client.get("/v1/models/crud/environments/staging"), 404, "NOT_FOUND")


def test_push_into_an_environment_and_promote_without_a_rebuild(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    v1 = push(cp, tmp_path, "flow", "v1")
    model_id = v1["model_id"]
    ok(cp.client.post("/v1/models/flow/environments", json={"name": "staging"}), 201)
    empty = cp.client.post(f"/model-{model_id}/environments/staging/predict", json={})
    assert empty.status_code == 404 and empty.json()["error_code"] == "ENVIRONMENT_EMPTY", empty.text
    assert empty.json()["detail"] == "environment staging of model flow has no deployment yet"
    assert empty.json()["hint"].startswith("truss push --environment staging")
    detail = ok(cp.client.get("/v1/models/flow"))
    assert detail["environments"] == ["production", "staging"]
    assert [(e["name"], e["url"]) for e in detail["invocation"]["environments"]] == [
        ("staging", f"{cp.url}/model-{model_id}/environments/staging/predict")]

    # Pushed into staging: it serves there once ACTIVE; production keeps v1.
    v2 = push(cp, tmp_path, "flow", "v2", environment="staging")
    eventually(lambda: current_id(cp, "flow", "staging") == v2["id"])
    assert marker(cp, model_id, "environments/staging") == "v2"
    assert marker(cp, model_id, "production") == marker(cp, model_id, "environments/production") == "v1"
    shown = ok(cp.client.get(f"/v1/models/flow/deployments/{v2['id']}"))
    assert shown["environment"] == "staging" and not shown["is_production"]
    unknown = cp.client.post("/v1/models/flow/deployments", json={"tree_hash": v2_tree(cp, v2), "environment": "qa"})
    assert unknown.status_code == 404 and unknown.json()["detail"]["existing"] == ["production", "staging"]

    # staging -> production: same build, production answers v2, v1 scaled down (the default
    # cleanup), staging serves nothing.
    with opened_store(cp) as store:
        builds_before = len(store.builds.list(v2["id"]))
    promoted = ok(cp.client.post("/v1/models/flow/environments/production/promote", json={"deployment_id": v2["name"]}))
    assert promoted["is_production"] and promoted["promoted_into"] == "production"
    assert promoted["previous_deployment"] == {"id": v1["id"], "name": v1["name"], "cleanup": "SCALE_TO_ZERO"}
    assert marker(cp, model_id, "production") == marker(cp, model_id, "environments/production") == "v2"
    assert ok(cp.client.get(f"/v1/models/flow/deployments/{v1['id']}"))["replicas"] == 0
    assert current_id(cp, "flow", "staging") is None
    with opened_store(cp) as store:
        assert len(store.builds.list(v2["id"])) == builds_before  # promotion never rebuilds

    # Back to v1 through the deployment's promote, keeping v2: v1 serves again.
    back = ok(cp.client.post(f"/v1/models/flow/deployments/{v1['id']}/promote",
                             json={"environment": "production", "scale_down_previous_deployment": False}))
    assert back["previous_deployment"]["cleanup"] == "KEEP" and back["replicas"] == 1
    assert marker(cp, model_id, "production") == "v1"
    assert ok(cp.client.get(f"/v1/models/flow/deployments/{v2['id']}"))["replicas"] == 1
    # The production deployment cannot leave production empty.
    left = refused(cp.client.post(f"/v1/models/flow/deployments/{v1['id']}/promote", json={"environment": "staging"}),
                   409, "NOT_PROMOTABLE")
    assert "promote another deployment into production first" in left["detail"]
    ok(cp.client.post(f"/v1/models/flow/deployments/{v2['id']}/promote", json={"environment": "staging"}))
    assert marker(cp, model_id, "environments/staging") == "v2"

    # An inactive deployment must be activated first; the environment's deactivate does it.
    deactivated = ok(cp.client.post("/v1/models/flow/environments/staging/deactivate"))
    assert deactivated["current_deployment"]["desired_state"] == "inactive"
    inactive = refused(cp.client.post("/v1/models/flow/environments/production/promote",
                                      json={"deployment_id": v2["id"]}), 409, "NOT_PROMOTABLE")
    assert "activate it first" in inactive["detail"]


def v2_tree(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> str:
    with opened_store(cp) as store:
        return store.deployments.get_by_id(deployment["id"]).archive_sha256


def test_one_promotion_at_a_time_and_development_stays_out(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    v1 = push(cp, tmp_path, "busy", "v1")
    ok(cp.client.post("/v1/models/busy/environments", json={"name": "staging"}), 201)
    v2 = push(cp, tmp_path, "busy", "v2")
    # A rolling promotion under way (the rollout's row, written as the rollout would).
    with opened_store(cp) as store:
        production_id = store.environments.get(v1["model_id"], "production").id
        stamp = datetime.now(timezone.utc)
        with write_transaction(store.engine) as db:
            db.execute(schema.promotions.insert().values(
                id="promo1", model_id=v1["model_id"], environment_id=production_id, candidate_deployment_id=v2["id"],
                previous_deployment_id=v1["id"], kind="rolling", status="RAMPING_UP", percent_traffic_to_new_version=40,
                step=1, settings={}, created_at=stamp, updated_at=stamp))
    production = environment(cp, "busy", "production")
    assert production["candidate_deployment"]["id"] == v2["id"] and production["current_deployment"]["id"] == v1["id"]
    assert production["in_progress_promotion"] == {
        "id": "promo1", "status": "RAMPING_UP", "kind": "rolling", "percent_traffic_to_new_version": 40,
        "error_message": None, "rolling_deploy": True}
    busy = refused(cp.client.post(f"/v1/models/busy/deployments/{v2['id']}/promote"), 409, "PROMOTION_IN_PROGRESS")
    assert "promo1" in busy["error"] and "RAMPING_UP" in busy["error"]
    # Both answer production while the split holds (the gateway reads the promotion's share).
    eventually(lambda: {marker(cp, v1["model_id"], "production") for _ in range(40)} == {"v1", "v2"})
    with opened_store(cp) as store, write_transaction(store.engine) as db:
        db.execute(schema.promotions.update().where(schema.promotions.c.id == "promo1")
                   .values(status="CANCELED", finished_at=datetime.now(timezone.utc)))
    eventually(lambda: {marker(cp, v1["model_id"], "production") for _ in range(10)} == {"v1"})

    development = cp.push(write_model_dir(tmp_path / "busy-dev", MARKER_MODEL,
                                          "model_name: busy\npython_version: py311\n", {"data/marker.txt": "dev"}),
                          model="busy", development=True)
    refused(cp.client.post("/v1/models/busy/environments/staging/promote", json={"deployment_id": "development"}),
            409, "NOT_PROMOTABLE")
    into = refused(cp.client.post(f"/v1/models/busy/deployments/{development['id']}/promote",
                                  json={"environment": "staging"}), 409, "NOT_PROMOTABLE")
    assert "production only" in into["error"]


def test_push_promotes_once_active_with_the_same_cleanup(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    v1 = push(cp, tmp_path, "pushed", "v1")
    v2 = push(cp, tmp_path, "pushed", "v2", promote=True)
    eventually(lambda: current_id(cp, "pushed", "production") == v2["id"])
    assert ok(cp.client.get(f"/v1/models/pushed/deployments/{v1['id']}"))["replicas"] == 0  # SCALE_TO_ZERO
    v3 = push(cp, tmp_path, "pushed", "v3", environment="production", preserve_previous_production_deployment=True)
    eventually(lambda: current_id(cp, "pushed", "production") == v3["id"])
    assert marker(cp, v1["model_id"], "production") == "v3"
    assert ok(cp.client.get(f"/v1/models/pushed/deployments/{v2['id']}"))["replicas"] == 1  # preserved


def test_a_push_into_a_rolling_environment_begins_a_rolling_promotion(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    # `truss push --environment staging` where staging rolls: the push's promotion once ACTIVE
    # is the one the promote routes begin (a stabilization hour holds its first step).
    first = push(cp, tmp_path, "rolls", "v1")  # the model's first: production
    ok(cp.client.post("/v1/models/rolls/environments", json={"name": "staging", "promotion_settings": {
        "rolling_deploy": True, "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 3600},
    }}), 201)
    v2 = push(cp, tmp_path, "rolls", "v2", environment="staging")
    eventually(lambda: current_id(cp, "rolls", "staging") == v2["id"])  # nothing to roll from yet: instant
    v3 = push(cp, tmp_path, "rolls", "v3", environment="staging")
    shown = eventually(lambda: environment(cp, "rolls", "staging")["in_progress_promotion"])
    assert shown["status"] in ("RELEASING", "RAMPING_UP") and shown["rolling_deploy"], shown
    assert environment(cp, "rolls", "staging")["candidate_deployment"]["id"] == v3["id"]
    ok(cp.client.post("/v1/models/rolls/environments/staging/force_roll_forward_promotion"))
    eventually(lambda: current_id(cp, "rolls", "staging") == v3["id"])
    eventually(lambda: marker(cp, first["model_id"], "environments/staging") == "v3")
    assert marker(cp, first["model_id"], "production") == "v1"


def test_an_instant_promotion_is_recorded_as_a_promotion_that_completed_at_once(cp: ControlPlaneProcess,
                                                                                 tmp_path: Path) -> None:
    v1 = push(cp, tmp_path, "instant", "v1")
    last = "/v1/models/instant/environments/production/promotion"
    # Production taken by the first push is no promotion anybody asked for.
    assert ok(cp.client.get(last))["promotion"] is None
    v2 = push(cp, tmp_path, "instant", "v2")
    ok(cp.client.post("/v1/models/instant/environments/production/promote", json={"deployment_id": v2["id"]}))

    promotion = ok(cp.client.get(last))["promotion"]
    assert (promotion["kind"], promotion["status"], promotion["percent_traffic_to_new_version"]) == (
        "instant", "SUCCEEDED", 100), promotion
    assert promotion["candidate_deployment"]["id"] == v2["id"] and promotion["previous_deployment"]["id"] == v1["id"]
    assert promotion["cleanup"] == "SCALE_TO_ZERO" and promotion["error_message"] is None
    assert promotion["finished_at"] == promotion["created_at"]
    assert environment(cp, "instant", "production")["in_progress_promotion"] is None  # over at once
    # Nothing to steer: the controls still say no promotion is in progress.
    refused(cp.client.post("/v1/models/instant/environments/production/pause_promotion"), 409,
            "NO_PROMOTION_IN_PROGRESS")

    # Each one is its own row: back to v1 (kept running), then into a new environment.
    ok(cp.client.post(f"/v1/models/instant/deployments/{v1['id']}/promote",
                      json={"environment": "production", "scale_down_previous_deployment": False}))
    back = ok(cp.client.get(last))["promotion"]
    assert back["id"] != promotion["id"] and back["cleanup"] == "KEEP"
    assert (back["candidate_deployment"]["id"], back["previous_deployment"]["id"]) == (v1["id"], v2["id"])
    ok(cp.client.post("/v1/models/instant/environments", json={"name": "qa"}), 201)
    ok(cp.client.post("/v1/models/instant/environments/qa/promote", json={"deployment_id": v2["id"]}))
    into_qa = ok(cp.client.get("/v1/models/instant/environments/qa/promotion"))["promotion"]
    assert into_qa["candidate_deployment"]["id"] == v2["id"] and into_qa["previous_deployment"] is None
    assert into_qa["cleanup"] is None
