"""Development deployments end to end (issue 10): a real control plane process started with
`--dev-idle-seconds 2`, real HTTP, real replicas (process runtime).

Created by `"development": true` (named development, not production, no version), kept for
the same tree and rebuilt in place for another; options it cannot take refused; predict at
/development/predict; idle -> SCALED_TO_ZERO with no replica process left; a request then
parks through WAKING_UP and is answered; the wake route answers 202 and wakes it, and calling
it keeps it awake; a kill -9 while scaled to zero keeps it so, accrues no replica-seconds, and
a request still wakes it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, live_processes_in, ok, opened_store, refused, replica_sessions
from controlplane_support import ControlPlaneProcess, running_controlplane, start_controlplane, stop_replicas

IDLE_SECONDS = 2
IDLE_ARGS = ("--dev-idle-seconds", str(IDLE_SECONDS))
READY = ("ACTIVE", "SCALED_TO_ZERO")  # with a 2-second idle time, ACTIVE may be over by the next poll

# Answers with its marker. load() waits while the file named by GATE_ENV... is absent: the
# test holds a wake in WAKING_UP for as long as it needs. The gate path is written into the
# code, so one model directory = one gate.
MODEL = """
import os
import time

GATE = {gate!r}
MARKER = {marker!r}


class Model:
    def load(self):
        deadline = time.monotonic() + 120
        while GATE and not os.path.exists(GATE) and time.monotonic() < deadline:
            time.sleep(0.05)

    def predict(self, request):
        return {{"marker": MARKER, "echo": request}}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("development") / "cp", extra_args=IDLE_ARGS) as plane:
        yield plane


def model_dir(root: Path, name: str, marker: str = "a", gate: Path | None = None) -> Path:
    code = MODEL.format(gate=str(gate) if gate else "", marker=marker)
    return write_model_dir(root / f"{name}-{marker}", code, f"model_name: {name}\npython_version: py311\n")


def push_development(cp: ControlPlaneProcess, source: Path, model: str, status: int = 201, **options: Any) -> dict[str, Any]:
    response = cp.client.post(f"/v1/models/{model}/deployments",
                              json={"tree_hash": cp.upload(source), "development": True, **options})
    assert response.status_code == status, response.text
    return response.json()


def status_of(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}"))


def scaled_to_zero(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    """Wait for it to scale to zero, then check no process of any of its replicas is left."""
    found = cp.wait_for_status(deployment["model_id"], deployment["id"], "SCALED_TO_ZERO", "BUILD_FAILED",
                               "DEPLOY_FAILED", timeout=300)
    assert found["status"] == "SCALED_TO_ZERO", found
    sessions = replica_sessions(cp, deployment["id"])
    assert sessions
    eventually(lambda: not live_processes_in(sessions))
    return status_of(cp, deployment)


def predict(client: httpx.Client, model_id: str, payload: Any) -> Any:
    return ok(client.post(f"/model-{model_id}/development/predict", json=payload))


def build_log(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> str:
    response = cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/logs",
                             params={"kind": "build"})
    assert response.status_code == 200, response.text
    return response.text


# -- creation ------------------------------------------------------------------------------------


def test_a_development_push_creates_the_development_deployment_and_refuses_options_it_cannot_take(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    source = model_dir(tmp_path, "devcreate")
    for options, word in (({"deployment_name": "mine"}, "deployment_name"), ({"promote": True}, "promote"),
                          ({"environment": "staging"}, "environment"), ({"version_bump": "MAJOR"}, "version")):
        refusal = refused(cp.client.post("/v1/models/devcreate/deployments", json={
            "tree_hash": cp.upload(source), "development": True, **options}), 400, "DEVELOPMENT_OPTION_CONFLICT")
        assert word in refusal["error"], refusal
    created = push_development(cp, source, "devcreate")
    # The model's first deployment, and still not production.
    assert (created["name"], created["version"], created["action"]) == ("development", None, "created")
    assert created["is_development"] and not created["is_production"] and created["replicas"] == 1
    model = ok(cp.client.get(f"/v1/models/{created['model_id']}"))
    assert model["production_deployment_id"] is None

    # The same tree again: the same deployment, unchanged, no second build.
    again = push_development(cp, source, "devcreate", status=200)
    assert (again["id"], again["action"]) == (created["id"], "unchanged")
    with opened_store(cp) as store:
        assert len(store.builds.list(created["id"])) == 1

    # A published push after it is the first production deployment (once ACTIVE), versioned from 0.1.0.
    published = ok(cp.client.post("/v1/models/devcreate/deployments", json={"tree_hash": cp.upload(source)}), 201)
    assert published["version"] == "0.1.0" and published["name"] == "deployment-2"
    published = cp.wait_for_status(published["model_id"], published["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
    assert published["is_production"], published
    listed = ok(cp.client.get("/v1/models/devcreate/deployments"))["deployments"]
    assert [(d["name"], d["is_production"]) for d in listed] == [("development", False), ("deployment-2", True)]
    ok(cp.client.delete("/v1/models/devcreate"))


def test_a_development_push_of_another_tree_is_staged_as_a_patch_not_rebuilt(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    # What `truss push --watch` does after edits made while nothing watched: the serving
    # replica takes them as a patch (no build, no replica stopped for one).
    first = push_development(cp, model_dir(tmp_path, "devstage", marker="one"), "devstage")
    cp.wait_for_status(first["model_id"], first["id"], *READY, timeout=300)
    assert predict(cp.client, first["model_id"], {"n": 1}) == {"marker": "one", "echo": {"n": 1}}

    staged = push_development(cp, model_dir(tmp_path, "devstage", marker="two"), "devstage", status=200)
    assert (staged["id"], staged["action"]) == (first["id"], "staged"), staged
    assert staged["status"] in (*READY, "WAKING_UP"), staged
    synced = ok(cp.client.post(f"/v1/models/{first['model_id']}/deployments/development/patches/sync", timeout=300))
    assert synced["action"] in ("hot_swap", "restart", "deferred"), synced  # deferred: it had scaled to zero
    assert predict(cp.client, first["model_id"], {"n": 2}) == {"marker": "two", "echo": {"n": 2}}
    log = build_log(cp, first)
    assert "staged the pushed tree" in log and "rebuilding from the pushed tree" not in log, log
    ok(cp.client.delete(f"/v1/models/{first['model_id']}"))


def test_a_development_push_after_a_failed_build_rebuilds_it_in_place(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    broken = write_model_dir(tmp_path / "devfix-broken", MODEL.format(gate="", marker="one"),
                             "model_name: devfix\npython_version: py311\nrequirements:\n  - truss-cli-test-no-such-package==0.0.1\n")
    first = push_development(cp, broken, "devfix")
    failed = cp.wait_for_status(first["model_id"], first["id"], "BUILD_FAILED", *READY, timeout=300)
    assert failed["status"] == "BUILD_FAILED", failed
    old_sessions = replica_sessions(cp, first["id"])

    rebuilt = push_development(cp, model_dir(tmp_path, "devfix", marker="two"), "devfix", status=200)
    assert (rebuilt["id"], rebuilt["action"], rebuilt["status"]) == (first["id"], "rebuilding", "BUILDING")
    cp.wait_for_status(first["model_id"], first["id"], *READY, timeout=300)
    assert predict(cp.client, first["model_id"], {"n": 2}) == {"marker": "two", "echo": {"n": 2}}
    eventually(lambda: not live_processes_in(old_sessions))
    assert "rebuilding from the pushed tree" in build_log(cp, first)
    ok(cp.client.delete(f"/v1/models/{first['model_id']}"))


# -- scale to zero and wake ------------------------------------------------------------------------


def test_an_idle_development_deployment_scales_to_zero_and_a_request_parks_through_waking_up(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    created = push_development(cp, model_dir(tmp_path, "devidle", gate=gate), "devidle")
    model_id = created["model_id"]
    asleep = scaled_to_zero(cp, created)
    assert asleep["status_label"] == "Scaled to zero" and asleep["desired_state"] == "active"
    assert asleep["active_replica_count"] == 0
    listed = ok(cp.client.get("/v1/models/devidle/deployments"))["deployments"]
    assert [d["status"] for d in listed] == ["SCALED_TO_ZERO"]

    # A request wakes it; the replica's load() waits on the gate, so the request parks.
    gate.unlink()
    answer: dict[str, Any] = {}
    client = cp.client_for(cp.admin_key)
    caller = threading.Thread(target=lambda: answer.update(predict(client, model_id, {"woke": True})))
    caller.start()
    waking = cp.wait_for_status(model_id, created["id"], "WAKING_UP", "ACTIVE", "UNHEALTHY", "DEPLOY_FAILED",
                                 timeout=300)
    assert (waking["status"], waking["status_label"]) == ("WAKING_UP", "Waking up")
    assert caller.is_alive() and not answer  # parked, not failed
    gate.touch()
    caller.join(timeout=120)
    assert answer == {"marker": "a", "echo": {"woke": True}}
    assert "waking up: a request arrived" in build_log(cp, created)

    # And it goes back to zero when idle again.
    scaled_to_zero(cp, created)
    ok(cp.client.delete(f"/v1/models/{model_id}"))


def test_the_wake_route_answers_202_wakes_it_and_keeps_it_awake_while_called(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    created = push_development(cp, model_dir(tmp_path, "devwake"), "devwake")
    model_id = created["model_id"]
    scaled_to_zero(cp, created)
    invoke_key = ok(cp.client.post("/v1/api_keys", json={"scope": "invoke"}), 201)["key"]
    invoker = cp.client_for(invoke_key)
    url = f"/model-{model_id}/development/wake"

    refused(cp.client_for(None).post(url), 401, "UNAUTHENTICATED")
    refused(invoker.get(url), 405, "METHOD_NOT_ALLOWED")
    woke = ok(invoker.post(url), 202)
    assert woke["waking_up"] and woke["deployments"] == [{"deployment_id": created["id"], "waking_up": True}]
    cp.wait_for_status(model_id, created["id"], "ACTIVE", timeout=300)
    assert ok(invoker.post(url), 202)["waking_up"] is False  # awake already: only the idle clock restarts
    sessions = replica_sessions(cp, created["id"])

    # Waking it every half second keeps it up well past the idle time, on the same replica.
    deadline = time.monotonic() + 3 * IDLE_SECONDS
    while time.monotonic() < deadline:
        ok(invoker.post(url), 202)
        assert status_of(cp, created)["status"] == "ACTIVE"
        time.sleep(0.5)
    assert replica_sessions(cp, created["id"]) == sessions and live_processes_in(sessions)
    scaled_to_zero(cp, created)  # once the calls stop

    # No development deployment, or no such model: 404 saying what exists.
    published = ok(cp.client.post("/v1/models/devwake-published/deployments",
                                  json={"tree_hash": cp.upload(model_dir(tmp_path, "devwake-published"))}), 201)
    cp.wait_for_status(published["model_id"], published["id"], "ACTIVE", timeout=300)
    missing = refused(cp.client.post(f"/model-{published['model_id']}/development/wake"), 404, "NOT_FOUND")
    assert "production" in missing["detail"]
    refused(cp.client.post("/model-nosuchmodel/development/wake"), 404, "MODEL_NOT_FOUND")
    ok(cp.client.delete(f"/v1/models/{model_id}"))
    ok(cp.client.delete(f"/v1/models/{published['model_id']}"))


def test_a_kill_while_scaled_to_zero_keeps_it_so_without_usage_and_a_request_still_wakes_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "cp"
    cp = start_controlplane(data_dir, extra_args=IDLE_ARGS)
    try:
        created = push_development(cp, model_dir(tmp_path, "devcrash"), "devcrash")
        scaled_to_zero(cp, created)
        cp.kill()
        cp.close()
        with opened_store(cp) as store:
            seconds_before = sum(u.replica_seconds for u in store.usage.totals("devcrash"))

        cp = start_controlplane(data_dir, admin_key=cp.admin_key, extra_args=IDLE_ARGS)
        time.sleep(IDLE_SECONDS)  # ticks of the new control plane
        assert status_of(cp, created)["status"] == "SCALED_TO_ZERO"
        assert not live_processes_in(replica_sessions(cp, created["id"]))
        cp.terminate()  # a clean stop flushes the usage it counted: none
        assert "Application shutdown complete" in cp.log()
        cp.close()
        with opened_store(cp) as store:
            assert sum(u.replica_seconds for u in store.usage.totals("devcrash")) == seconds_before

        cp = start_controlplane(data_dir, admin_key=cp.admin_key, extra_args=IDLE_ARGS)
        client = cp.client
        # The first request after the start may come before the first tick published the model.
        eventually(lambda: client.post(f"/model-{created['model_id']}/development/predict", json={}).status_code != 404)
        assert predict(client, created["model_id"], {"after": "crash"}) == {"marker": "a", "echo": {"after": "crash"}}
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)
