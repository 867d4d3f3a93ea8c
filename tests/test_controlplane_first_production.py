"""A model's production is its first deployment to become ACTIVE, not its first push: over a
real control plane (process runtime, real replicas), a first deployment whose load() fails
leaves production serving nothing (ENVIRONMENT_EMPTY at the gateway, no current deployment in
the API), and the next push, once ACTIVE, becomes production and answers there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, ok
from controlplane_support import ControlPlaneProcess, running_controlplane

FINAL = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")

FAILING = """
class Model:
    def load(self):
        raise RuntimeError("no weights here")

    def predict(self, request):
        return {"version": "broken"}
"""

WORKING = """
class Model:
    def predict(self, request):
        return {"version": "v2"}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("first-production") / "cp") as plane:
        yield plane


def push(cp: ControlPlaneProcess, root: Path, source: str, model: str = "firstprod",
         wait: bool = True) -> dict[str, Any]:
    model_dir = write_model_dir(root, source, f"model_name: {model}\npython_version: py311\n")
    created = cp.push(model_dir, model)
    assert not created["is_production"]  # not before it is ACTIVE
    return cp.wait_for_status(created["model_id"], created["id"], *FINAL) if wait else created


def production(cp: ControlPlaneProcess, model: str = "firstprod") -> Any:
    return ok(cp.client.get(f"/v1/models/{model}/environments/production"))["current_deployment"]


def test_a_failed_first_deployment_leaves_production_empty_and_the_next_active_one_takes_it(
        cp: ControlPlaneProcess, tmp_path: Path) -> None:
    failed = push(cp, tmp_path / "broken", FAILING)
    assert failed["status"] == "DEPLOY_FAILED" and not failed["is_production"], failed
    model_id = failed["model_id"]
    assert production(cp) is None
    assert ok(cp.client.get("/v1/models/firstprod"))["production_deployment_id"] is None
    # The routing table follows the failure within a tick.
    empty = eventually(lambda: (r := cp.client.post(f"/model-{model_id}/production/predict", json={})).status_code == 404
                       and r)
    assert empty.json()["error_code"] == "ENVIRONMENT_EMPTY"
    assert empty.json()["detail"] == "environment production of model firstprod has no deployment yet"

    working = push(cp, tmp_path / "working", WORKING)
    assert working["status"] == "ACTIVE" and working["is_production"], working  # in the same write as ACTIVE
    assert production(cp)["id"] == working["id"]
    answered = cp.client.post(f"/model-{model_id}/production/predict", json={})
    assert answered.status_code == 200 and answered.json() == {"version": "v2"}, answered.text
    assert ok(cp.client.get(f"/v1/models/firstprod/deployments/{failed['id']}"))["is_production"] is False


def test_production_waits_for_the_first_push_in_line_and_passes_on_when_it_fails(
        cp: ControlPlaneProcess, tmp_path: Path) -> None:
    # Two pushes at once: the second may be ACTIVE before the first fails; production waits for
    # the first in line, then passes to the second when the first fails.
    first = push(cp, tmp_path / "broken", FAILING, "handover", wait=False)
    second = push(cp, tmp_path / "working", WORKING, "handover", wait=False)
    assert cp.wait_for_status(first["model_id"], first["id"], *FINAL)["status"] == "DEPLOY_FAILED"
    assert cp.wait_for_status(second["model_id"], second["id"], *FINAL)["status"] == "ACTIVE"
    eventually(lambda: (production(cp, "handover") or {}).get("id") == second["id"])
    answered = cp.client.post(f"/model-{second['model_id']}/production/predict", json={})
    assert answered.status_code == 200 and answered.json() == {"version": "v2"}, answered.text

    # A working first push stays production when a later one comes up first: it is first in line.
    third = push(cp, tmp_path / "working3", WORKING, "inorder", wait=False)
    fourth = push(cp, tmp_path / "working4", WORKING, "inorder", wait=False)
    for created in (fourth, third):
        assert cp.wait_for_status(created["model_id"], created["id"], *FINAL)["status"] == "ACTIVE"
    eventually(lambda: production(cp, "inorder") is not None)
    assert production(cp, "inorder")["id"] == third["id"]
