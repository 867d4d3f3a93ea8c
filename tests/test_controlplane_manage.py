"""Managing models and deployments end to end (issue 9): a real control plane process, real
HTTP, real replicas (process runtime). One control plane serves the whole module; each test
pushes to models of its own, so the tests stay independent.

Names in order and custom, unique; rename; development rename refused; deactivate ->
INACTIVE (404 with the inactive body, still listed, no replica process left, an in-flight
request finishing first); activate without a rebuild; retry; delete refused for production,
a deleted deployment answering 404 and staying in usage; prune; versions; promotion; a model
delete freeing its processes, environment, tree and blobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, live_processes_in, ok, opened_store, refused, replica_sessions
from controlplane_support import ControlPlaneProcess, running_controlplane, start_controlplane, stop_replicas
from truss_cli.controlplane.trees import Trees

FINAL = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")

# Answers at once, or, given {"hold": PATH}, says it started (PATH.started) and answers only
# once PATH exists: a request the test keeps in flight for as long as it needs.
HOLD_MODEL = """
import os
import time


class Model:
    def predict(self, request):
        hold = request.get("hold") if isinstance(request, dict) else None
        if not hold:
            return {"echo": request}
        open(hold + ".started", "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"held": True}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("manage") / "cp") as plane:
        yield plane


def model_dir(root: Path, name: str, config: str = "", files: dict[str, str] | None = None) -> Path:
    return write_model_dir(root / name, HOLD_MODEL, f"model_name: {name}\npython_version: py311\n{config}", files)


def deployments_of(cp: ControlPlaneProcess, model: str) -> list[dict[str, Any]]:
    return ok(cp.client.get(f"/v1/models/{model}/deployments"))["deployments"]


def active(cp: ControlPlaneProcess, created: dict[str, Any]) -> dict[str, Any]:
    deployment = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
    assert deployment["status"] == "ACTIVE", deployment
    return deployment


def builds_of(cp: ControlPlaneProcess, deployment_id: str) -> int:
    with opened_store(cp) as store:
        return len(store.builds.list(deployment_id))


def build_log(cp: ControlPlaneProcess, model: str, deployment: str) -> str:
    response = cp.client.get(f"/v1/models/{model}/deployments/{deployment}/logs", params={"kind": "build"})
    return "\n".join(json.loads(line)["text"] for line in ok_text(response).splitlines())


def ok_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.text


def usage_of(cp: ControlPlaneProcess, model: str, **params: str) -> dict[str, dict[str, Any]]:
    rows = ok(cp.client.get("/v1/usage", params={"model": model, **params}))["usage"]
    return {row["deployment_id"]: row for row in rows}


# -- names and versions ---------------------------------------------------------------------


def test_names_in_order_or_custom_unique_and_versioned_and_renamable(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    source = model_dir(tmp_path, "names")
    first = cp.push(source)
    custom = cp.push(source, model="names", deployment_name="canary")
    third = cp.push(source, model="names", version_bump="MAJOR")
    assert [(d["name"], d["version"]) for d in (first, custom, third)] == [
        ("deployment-1", "0.1.0"), ("canary", "0.2.0"), ("deployment-3", "1.0.0")]
    # Production once ACTIVE (the first in line), not at the push.
    assert not first["is_primary"] and not custom["is_primary"]
    assert first["status_label"] == "Deploying" and first["desired_state"] == "active" and first["replicas"] == 1

    taken = refused(cp.client.post("/v1/models/names/deployments", json={
        "tree_hash": cp.upload(source), "deployment_name": "canary"}), 409, "NAME_TAKEN")
    assert "canary" in taken["error"]
    refused(cp.client.post("/v1/models/names/deployments", json={
        "tree_hash": cp.upload(source), "version_bump": "HUGE"}), 400, "INVALID_VERSION_BUMP")

    renamed = ok(cp.client.patch(f"/v1/models/names/deployments/{third['id']}", json={"name": "stable"}))
    assert renamed["name"] == "stable" and renamed["id"] == third["id"]
    assert ok(cp.client.get("/v1/models/names/deployments/stable"))["id"] == third["id"]
    refused(cp.client.patch("/v1/models/names/deployments/stable", json={"name": "canary"}), 409, "NAME_TAKEN")
    refused(cp.client.patch("/v1/models/names/deployments/stable", json={"name": "no spaces"}), 400, "INVALID_NAME")
    refused(cp.client.patch("/v1/models/names/deployments/stable", json={"name": "production"}), 400, "INVALID_NAME")
    assert [d["name"] for d in deployments_of(cp, "names")] == ["deployment-1", "canary", "stable"]

    # A version is never handed out twice, even once its deployment is gone.
    ok(cp.client.delete("/v1/models/names/deployments/stable"))
    fourth = cp.push(source, model="names", version_bump="PATCH")
    assert (fourth["name"], fourth["version"]) == ("deployment-4", "1.0.1")

    # The development deployment (no API creates one yet: the store does, as `truss watch` will).
    with opened_store(cp) as store:
        model = store.models.get("names")
        development = store.deployments.create(model.id, config={}, is_development=True, status="INACTIVE")
    assert development.name == "development" and development.version is None
    refused(cp.client.patch("/v1/models/names/deployments/development", json={"name": "dev2"}),
            400, "DEVELOPMENT_NOT_RENAMABLE")
    refused(cp.client.post("/v1/models/names/deployments/development/promote"), 409, "NOT_PROMOTABLE")
    ok(cp.client.delete("/v1/models/names"))


def test_model_names_take_letters_digits_spaces_dashes_and_underscores(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    tree_hash = cp.upload(model_dir(tmp_path, "named"))
    refusal = refused(cp.client.post("/v1/models/bad.name/deployments", json={"tree_hash": tree_hash}),
                      400, "INVALID_MODEL_NAME")
    assert "letters, digits, spaces" in refusal["detail"]
    created = ok(cp.client.post("/v1/models/My model_2-b/deployments", json={"tree_hash": tree_hash}), 201)
    assert ok(cp.client.get(f"/v1/models/{created['model_id']}"))["name"] == "My model_2-b"
    ok(cp.client.delete(f"/v1/models/{created['model_id']}"))


# -- deactivate / activate --------------------------------------------------------------------


def test_deactivate_lets_in_flight_requests_finish_stops_every_replica_and_activate_starts_without_a_rebuild(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    created = cp.push(model_dir(tmp_path, "toggle"))
    model_id, deployment_id = created["model_id"], created["id"]
    refused(cp.client.post(f"/v1/models/toggle/deployments/{deployment_id}/deactivate"), 409, "NOT_DEACTIVATABLE")
    active(cp, created)
    url = f"/model-{model_id}/production/predict"
    for n in range(3):
        assert ok(cp.client.post(url, json={"n": n})) == {"echo": {"n": n}}
    sessions = replica_sessions(cp, deployment_id)
    assert live_processes_in(sessions)

    # A request in flight when the deactivation comes gets its answer.
    hold = tmp_path / "hold"
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(cp.client.post(url, json={"hold": str(hold)})))
    in_flight.start()
    eventually(lambda: Path(f"{hold}.started").exists())
    deactivating = ok(cp.client.post("/v1/models/toggle/deployments/production/deactivate"))
    assert deactivating["status"] == "DEACTIVATING" and deactivating["desired_state"] == "inactive"
    inactive = cp.client.post(url, json={})
    body = refused(inactive, 404, "DEPLOYMENT_INACTIVE")
    assert body["detail"] == (f"deployment deployment-1 ({deployment_id}) of model toggle is inactive; "
                              "activate it with: truss deployments activate --model toggle deployment-1")
    hold.touch()
    in_flight.join()
    assert answers[0].status_code == 200 and answers[0].json() == {"held": True}

    stopped = cp.wait_for_status(model_id, deployment_id, "INACTIVE")
    assert stopped["status_label"] == "Inactive" and stopped["active_replica_count"] == 0
    assert live_processes_in(sessions) == []
    assert [d["id"] for d in deployments_of(cp, "toggle")] == [deployment_id]  # still listed
    refused(cp.client.post(f"/model-{model_id}/deployment/{deployment_id}/predict", json={}), 404, "DEPLOYMENT_INACTIVE")
    assert ok(cp.client.post("/v1/models/toggle/deployments/production/deactivate"))["status"] == "INACTIVE"
    assert "activate it first" in refused(
        cp.client.post("/v1/models/toggle/deployments/production/promote"), 409, "NOT_PROMOTABLE")["detail"]

    activating = ok(cp.client.post(f"/v1/models/toggle/deployments/{deployment_id}/activate"))
    assert activating["status"] == "DEPLOYING" and activating["desired_state"] == "active"
    active(cp, created)
    assert ok(cp.client.post(url, json={"again": True})) == {"echo": {"again": True}}
    assert builds_of(cp, deployment_id) == 1  # started from the stored build
    assert "activating from the stored build (no rebuild)" in build_log(cp, "toggle", deployment_id)
    assert ok(cp.client.post(f"/v1/models/toggle/deployments/{deployment_id}/activate"))["status"] == "ACTIVE"
    new_sessions = replica_sessions(cp, deployment_id)
    assert live_processes_in([s for s in new_sessions if s not in sessions])

    # Usage: the requests the gateway took to it and the time its replica ran (flushed every
    # few seconds), none of it before a time in the future.
    usage = eventually(lambda: (row := usage_of(cp, "toggle").get(deployment_id)) and row["requests"] >= 5 and row)
    assert usage["replica_seconds"] > 0 and usage["deleted"] is False and usage["deployment_name"] == "deployment-1"
    later = usage_of(cp, "toggle", since="2999-01-01")[deployment_id]
    assert (later["requests"], later["replica_seconds"]) == (0, 0)
    refused(cp.client.get("/v1/usage", params={"since": "last tuesday"}), 400, "BAD_SINCE")


def test_a_failed_build_is_retried_and_cannot_be_activated_deactivated_or_promoted(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    created = cp.push(model_dir(tmp_path, "flaky", "requirements_file: missing.txt\n"))
    failed = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
    assert failed["status"] == "BUILD_FAILED" and failed["status_label"] == "Deployment Failed", failed
    assert not failed["is_production"]  # a deployment that never became ACTIVE does not serve production
    flaky = f"/v1/models/flaky/deployments/{created['id']}"
    refused(cp.client.post(f"{flaky}/activate"), 409, "NOT_ACTIVATABLE")
    refused(cp.client.post(f"{flaky}/deactivate"), 409, "NOT_DEACTIVATABLE")
    refused(cp.client.post(f"{flaky}/promote"), 409, "NOT_PROMOTABLE")

    retried = ok(cp.client.post(f"{flaky}/retry"))
    assert retried["status"] == "BUILDING"
    again = cp.wait_for_status(created["model_id"], created["id"], *FINAL)
    assert again["status"] == "BUILD_FAILED" and builds_of(cp, created["id"]) == 2
    ok(cp.client.delete("/v1/models/flaky"))

    working = cp.push(model_dir(tmp_path, "steady"))
    active(cp, working)
    refused(cp.client.post("/v1/models/steady/deployments/production/retry"), 409, "NOT_RETRYABLE")
    ok(cp.client.delete("/v1/models/steady"))


# -- delete, prune, promote ---------------------------------------------------------------------


def test_delete_prune_and_promote(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    source = model_dir(tmp_path, "cleanup")
    pushed = [cp.push(source)] + [cp.push(source, model="cleanup") for _ in range(3)]
    for created in pushed:
        active(cp, created)
    model_id = pushed[0]["model_id"]
    first, second, third, fourth = (d["id"] for d in pushed)

    refusal = refused(cp.client.delete("/v1/models/cleanup/deployments/production"), 409, "PRODUCTION_NOT_DELETABLE")
    assert "serves production" in refusal["error"]
    assert "promote another deployment first: truss deployments promote --model cleanup" in refusal["detail"]

    sessions = replica_sessions(cp, second)
    assert ok(cp.client.delete(f"/v1/models/cleanup/deployments/{second}")) == {"id": second, "deleted": True}
    assert live_processes_in(sessions) == []
    refused(cp.client.get(f"/v1/models/cleanup/deployments/{second}"), 404, "NOT_FOUND")
    assert second not in [d["id"] for d in deployments_of(cp, "cleanup")]
    gone = refused(cp.client.post(f"/model-{model_id}/deployment/{second}/predict", json={}), 404, "NOT_FOUND")
    assert "is inactive" not in gone["detail"]
    deleted = usage_of(cp, "cleanup")[second]
    assert deleted["deleted"] is True and deleted["deleted_at"] and deleted["deployment_name"] == "deployment-2"

    # Prune keeps the newest N that are neither production nor development.
    dry = ok(cp.client.post("/v1/models/cleanup/deployments/prune", json={"keep": 1, "dry_run": True}))
    assert [d["id"] for d in dry["deleted"]] == [third]
    assert [d["id"] for d in deployments_of(cp, "cleanup")] == [first, third, fourth]
    pruned = ok(cp.client.post("/v1/models/cleanup/deployments/prune", json={"keep": 1}))
    assert [d["id"] for d in pruned["deleted"]] == [third] and [d["id"] for d in pruned["kept"]] == [first, fourth]
    assert [d["id"] for d in deployments_of(cp, "cleanup")] == [first, fourth]
    assert usage_of(cp, "cleanup")[third]["deleted"] is True

    # Promotion is a plain swap: the primary moves, the previous production keeps serving.
    promoted = ok(cp.client.post(f"/v1/models/cleanup/deployments/{fourth}/promote"))
    assert promoted["is_primary"] and promoted["environment"] == "production"
    model = ok(cp.client.get("/v1/models/cleanup"))
    assert (model["production_deployment_id"], model["production_deployment_name"]) == (fourth, "deployment-4")
    assert ok(cp.client.get(f"/v1/models/cleanup/deployments/{first}"))["is_primary"] is False
    assert ok(cp.client.post(f"/model-{model_id}/deployment/{first}/predict", json={"old": 1})) == {"echo": {"old": 1}}
    ok(cp.client.delete(f"/v1/models/cleanup/deployments/{first}"))

    only = refused(cp.client.delete("/v1/models/cleanup/deployments/production"), 409, "PRODUCTION_NOT_DELETABLE")
    assert "delete the model instead: truss models delete cleanup" in only["detail"]
    ok(cp.client.delete("/v1/models/cleanup"))


def test_deleting_a_model_frees_its_processes_environment_tree_and_blobs(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    shared = {"data/shared.txt": "a file two models hold\n"}
    keeper = cp.push(model_dir(tmp_path, "keeper", files=shared))
    # Its own requirement gives it an environment of its own (environments are keyed by requirements).
    doomed = cp.push(model_dir(tmp_path, "doomed", "requirements:\n  - msgpack\n",
                               files={**shared, "data/own.txt": "only the doomed model holds this\n"}))
    active(cp, keeper)
    active(cp, doomed)
    with opened_store(cp) as store:
        artifact = store.deployments.get_by_id(doomed["id"]).build_artifact
        keeper_artifact = store.deployments.get_by_id(keeper["id"]).build_artifact
        doomed_tree = store.deployments.get_by_id(doomed["id"]).archive_sha256
    environment = Path(artifact["reference"])
    assert environment.is_dir() and environment != Path(keeper_artifact["reference"])
    sessions = replica_sessions(cp, doomed["id"])
    assert live_processes_in(sessions)
    # Make everything older than the sweep's grace period, as an hour later it would be.
    for root in (cp.data_dir / "blobs", cp.data_dir / "manifests"):
        for path in root.rglob("*"):
            os.utime(path, (time.time() - 7200, time.time() - 7200))

    assert ok(cp.client.delete("/v1/models/doomed")) == {"id": doomed["model_id"], "deleted": True}

    refused(cp.client.get("/v1/models/doomed"), 404, "NOT_FOUND")
    assert refused(cp.client.post(f"/model-{doomed['model_id']}/production/predict", json={}), 404, "MODEL_NOT_FOUND")
    assert live_processes_in(sessions) == []
    assert not environment.exists()
    assert not (cp.data_dir / "trees" / doomed_tree).exists()
    assert not (cp.data_dir / "manifests" / f"{doomed_tree}.json").exists()
    with opened_store(cp) as store:
        trees = Trees(store)
        needed = set()
        for deployment in store.deployments.list():
            manifest = trees.manifest(deployment.archive_sha256)
            needed |= {(trees.index / f"{deployment.archive_sha256}.json").read_text().strip()}
            needed |= {entry.sha256 for entry in manifest.values()}
        assert set(store.blobs.digests()) == needed  # the shared file too, nothing more
    assert ok(cp.client.post(f"/model-{keeper['model_id']}/production/predict", json={"x": 1})) == {"echo": {"x": 1}}
    assert usage_of(cp, "doomed")[doomed["id"]]["deleted"] is True
    ok(cp.client.delete("/v1/models/keeper"))


# -- the model page ---------------------------------------------------------------------------


def test_a_model_shows_its_readme_description_type_framework_deployments_and_working_invocation_code(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    source = model_dir(tmp_path, "page", "model_metadata:\n  model_type: text-generation\n  framework: pytorch\n",
                       files={"README.md": "# Page\n\nGreets you.\n"})
    created = cp.push(source)
    model = ok(cp.client.get("/v1/models/page"))
    assert (model["readme"], model["description"]) == ("# Page\n\nGreets you.\n", "")
    assert (model["type"], model["framework"]) == ("text-generation", "pytorch")
    assert [d["id"] for d in model["deployments"]] == [created["id"]] and model["deployments"][0]["version"] == "0.1.0"
    listed = next(m for m in ok(cp.client.get("/v1/models"))["models"] if m["name"] == "page")
    assert listed["status"] in ("BUILDING", "DEPLOYING", "LOADING_MODEL", "ACTIVE") and "readme" not in listed

    edited = ok(cp.client.patch("/v1/models/page", json={"description": "A greeter", "readme": "# New\n"}))
    assert (edited["description"], edited["readme"]) == ("A greeter", "# New\n")
    refused(cp.client.patch("/v1/models/page", json={"name": "other"}), 400, "NAME_NOT_EDITABLE")

    invocation = model["invocation"]
    production_url = f"{cp.url}/model-{created['model_id']}/production/predict"
    assert invocation["production"]["url"] == production_url
    assert invocation["deployments"][0]["url"] == f"{cp.url}/model-{created['model_id']}/deployment/{created['id']}/predict"
    assert invocation["production"]["curl"] == (
        f"curl -X POST {production_url} -H \"Authorization: Api-Key $TRUSS_API_KEY\" "
        "-H \"Content-Type: application/json\" -d '{}'")
    active(cp, created)
    # The snippets run as pasted, with the key in the environment.
    environment = {**os.environ, "TRUSS_API_KEY": cp.admin_key}
    python = subprocess.run([sys.executable, "-c", invocation["production"]["python"]], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert python.returncode == 0 and python.stdout.strip() == "{'echo': {}}", python.stderr
    curl = subprocess.run(["sh", "-c", invocation["deployments"][0]["curl"]], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0 and json.loads(curl.stdout) == {"echo": {}}, curl.stderr

    # An invoke key learns a model's id from its name, for the models it may call only.
    mine = ok(cp.client.post("/v1/api_keys", json={"scope": "invoke", "models": ["page"]}), 201)["key"]
    other = ok(cp.client.post("/v1/api_keys", json={"scope": "invoke", "models": ["elsewhere"]}), 201)["key"]
    assert ok(cp.client_for(mine).get("/v1/models/page")) == {"id": created["model_id"], "name": "page"}
    refused(cp.client_for(other).get("/v1/models/page"), 403, "FORBIDDEN")
    assert refused(cp.client_for(mine).get("/v1/models/nope"), 404, "NOT_FOUND")["detail"]["existing"] == [
        f"page ({created['model_id']})"]
    refused(cp.client_for(mine).get("/v1/models"), 403, "FORBIDDEN")
    refused(cp.client_for(mine).patch("/v1/models/page", json={"description": "x"}), 403, "FORBIDDEN")
    ok(cp.client.delete("/v1/models/page"))


def test_a_deactivation_cut_short_by_a_crash_finishes_after_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "cp"
    cp = start_controlplane(data_dir)
    try:
        created = cp.push(model_dir(tmp_path, "crashy"))
        model_id, deployment_id = created["model_id"], created["id"]
        active(cp, created)
        sessions = replica_sessions(cp, deployment_id)
        # A request in flight keeps the replica draining, so the deployment is DEACTIVATING
        # when the control plane dies.
        hold = tmp_path / "hold"
        client = cp.client_for(cp.admin_key)
        threading.Thread(target=lambda: _quietly(client.post, f"/model-{model_id}/production/predict",
                                                 json={"hold": str(hold)}), daemon=True).start()
        eventually(lambda: Path(f"{hold}.started").exists())
        assert ok(cp.client.post(f"/v1/models/crashy/deployments/{deployment_id}/deactivate"))["status"] == "DEACTIVATING"
        cp.kill()

        cp = start_controlplane(data_dir, admin_key=cp.admin_key)
        assert ok(cp.client.get(f"/v1/models/crashy/deployments/{deployment_id}"))["status"] == "DEACTIVATING"
        refused(cp.client.post(f"/model-{model_id}/production/predict", json={}), 404, "DEPLOYMENT_INACTIVE")
        hold.touch()
        cp.wait_for_status(model_id, deployment_id, "INACTIVE", timeout=120)
        assert live_processes_in(sessions) == []
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call(*args, **kwargs)
