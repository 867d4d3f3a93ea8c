"""Autoscaling and scale to zero of published deployments (issue 11, task B) over a real
control plane (process runtime): the settings route, a deployment scaling up under load sent
by a second process and back down after a short scale_down_delay, and one at zero woken by a
request that is answered."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, live_processes_in, ok, refused, replica_sessions
from controlplane_support import ControlPlaneProcess, running_controlplane

MODEL = """
import os
import time
from pathlib import Path


class Model:
    def predict(self, request):
        if "hold" in request:  # the test holds this request in flight until it creates the file
            hold = Path(request["hold"])
            Path(f"{hold}.started").write_text(os.environ.get("TRUSS_REPLICA_ID", ""))
            deadline = time.monotonic() + 120
            while not hold.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            return {"held": True}
        time.sleep(float(request.get("sleep", 0)))
        return {"ok": True}
"""
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("autoscaling") / "cp") as plane:
        yield plane


def push_active(cp: ControlPlaneProcess, root: Path, name: str) -> dict[str, Any]:
    source = write_model_dir(root / name, MODEL, f"model_name: {name}\npython_version: py311\n")
    created = cp.push(source, name)
    found = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
    assert found["status"] == "ACTIVE", found
    return created


def settings_path(deployment: dict[str, Any]) -> str:
    return f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/autoscaling_settings"


def deployment_now(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}"))


def build_log(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> str:
    return cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/logs",
                         params={"kind": "build"}).text


def test_the_settings_route_updates_partially_answers_accepted_or_unchanged_and_refuses_bad_values(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    deployment = push_active(cp, tmp_path, "scalesettings")
    path = settings_path(deployment)
    before = ok(cp.client.get(path))
    assert before["autoscaling_settings"]["max_replica"] == 1 and before["autoscaling_settings"]["min_replica"] == 0

    changed = ok(cp.client.patch(path, json={"max_replica": 4, "concurrency_target": 2}))
    assert changed["status"] == "ACCEPTED"
    assert changed["autoscaling_settings"] == {**before["autoscaling_settings"], "max_replica": 4, "concurrency_target": 2}
    assert ok(cp.client.patch(path, json={"max_replica": 4}))["status"] == "UNCHANGED"
    assert ok(cp.client.get(path))["autoscaling_settings"]["concurrency_target"] == 2  # kept

    for body, words in (({"min_replica": 5}, "max_replica (4) must be at least min_replica (5)"),
                        ({"scale_down_delay": 4000}, "scale_down_delay"),
                        ({"max_replicas": 3}, "max_replicas")):
        refusal = refused(cp.client.patch(path, json=body), 400, "INVALID_AUTOSCALING_SETTINGS")
        assert words in refusal["error"], refusal
    assert "min_replica" in refusal["detail"]  # the unknown field's refusal lists the real ones
    assert ok(cp.client.get(path))["autoscaling_settings"]["max_replica"] == 4  # nothing stored

    missing = refused(cp.client.patch(path.replace(deployment["id"], "nope"), json={}), 404, "NOT_FOUND")
    assert any(deployment["id"] in e for e in missing["detail"]["existing"]), missing


def start_load(cp: ControlPlaneProcess, tmp_path: Path, model_id: str, threads: int) -> tuple[subprocess.Popen, Path, Path]:
    stop, out = tmp_path / "stop-load", tmp_path / "load.json"
    process = subprocess.Popen([sys.executable, str(HERE / "load_client.py"), cp.url, cp.admin_key,
                                f"/model-{model_id}/production/predict", str(threads), str(stop), str(out)])
    return process, stop, out


def test_a_deployment_scales_up_under_load_from_another_process_and_down_after_the_delay(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    deployment = push_active(cp, tmp_path, "scaleload")
    model_id = deployment["model_id"]
    ok(cp.client.patch(settings_path(deployment), json={
        "min_replica": 1, "max_replica": 3, "autoscaling_window": 10, "scale_down_delay": 3,
        "concurrency_target": 1, "target_utilization_percentage": 100}))

    # Three callers, each always with a request in flight: three replicas wanted.
    load, stop, out = start_load(cp, tmp_path, model_id, threads=3)
    try:
        eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == 3, timeout=300)
        assert deployment_now(cp, deployment)["replicas"] == 3
        time.sleep(2)  # a few answers from all three
    finally:
        stop.touch()
        assert load.wait(timeout=300) == 0
    results = json.loads(out.read_text())
    failures = [r for r in results if r["status"] != 200]
    assert not failures, failures[:5]  # requests beyond capacity waited; none failed
    assert len(Counter(r["replica"] for r in results)) == 3, Counter(r["replica"] for r in results)

    # No load: after the window drains and the delay passes, back to min_replica, the extra
    # replicas' processes gone.
    sessions = replica_sessions(cp, deployment["id"])
    eventually(lambda: deployment_now(cp, deployment)["replicas"] == 1, timeout=120)
    eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == 1, timeout=120)
    eventually(lambda: len([s for s in sessions if live_processes_in([s])]) == 1, timeout=120)
    assert deployment_now(cp, deployment)["status"] == "ACTIVE"
    log = build_log(cp, deployment)
    assert "autoscaling: 1 -> " in log and "scaling down: retiring" in log, log
    assert ok(cp.client.post(f"/model-{model_id}/production/predict", json={})) == {"ok": True}
    ok(cp.client.delete(f"/v1/models/{model_id}"))


def test_a_replica_retired_by_a_scale_down_finishes_its_request_in_flight_first(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    import threading

    deployment = push_active(cp, tmp_path, "scaledrain")
    model_id = deployment["model_id"]
    ok(cp.client.patch(settings_path(deployment), json={"min_replica": 2, "max_replica": 2}))
    eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == 2, timeout=300)

    # concurrency_target 1: two held requests land on the two replicas, one each.
    answers: list[Any] = []
    holds = [tmp_path / "hold-a", tmp_path / "hold-b"]
    client = cp.client_for(cp.admin_key)
    callers = [threading.Thread(target=lambda h=h: answers.append(
        client.post(f"/model-{model_id}/production/predict", json={"hold": str(h)}))) for h in holds]
    for caller in callers:
        caller.start()
    eventually(lambda: all(Path(f"{h}.started").exists() for h in holds))
    assert {Path(f"{h}.started").read_text() for h in holds} == {r for r in _replica_ids(cp, deployment)}

    sessions = replica_sessions(cp, deployment["id"])
    ok(cp.client.patch(settings_path(deployment), json={"min_replica": 1, "max_replica": 1}))
    eventually(lambda: "scaling down: retiring 1 replica(s)" in build_log(cp, deployment))
    # Unrouted, but its request is still in flight: not even signalled yet (a server told to
    # stop closes its listener at once), so both replicas still answer their status route.
    for url in _replica_urls(cp, deployment):
        assert httpx.get(f"{url}/v1/replica/status", timeout=10).json()["phase"] == "ready"
    assert len([s for s in sessions if live_processes_in([s])]) == 2
    for hold in holds:
        hold.touch()
    for caller in callers:
        caller.join(120)
    assert [a.status_code for a in answers] == [200, 200] and all(a.json() == {"held": True} for a in answers)
    eventually(lambda: len([s for s in sessions if live_processes_in([s])]) == 1, timeout=120)
    assert deployment_now(cp, deployment)["active_replica_count"] == 1
    ok(cp.client.delete(f"/v1/models/{model_id}"))


def _replica_urls(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> list[str]:
    from controlplane_checks import opened_store

    with opened_store(cp) as store:
        return [r.handle["url"] for r in store.replicas.list(deployment["id"])]


def _replica_ids(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> set[str]:
    from controlplane_checks import opened_store

    with opened_store(cp) as store:
        return {r.handle["replica_id"] for r in store.replicas.list(deployment["id"]) if r.phase != "stopped"}


def test_a_published_deployment_scales_to_zero_and_a_request_wakes_it_and_is_answered(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    deployment = push_active(cp, tmp_path, "scalezero")
    model_id = deployment["model_id"]
    sessions = replica_sessions(cp, deployment["id"])
    assert ok(cp.client.patch(settings_path(deployment), json={
        "min_replica": 0, "autoscaling_window": 10, "scale_down_delay": 2}))["status"] == "ACCEPTED"

    asleep = cp.wait_for_status(model_id, deployment["id"], "SCALED_TO_ZERO", timeout=120)
    assert (asleep["status_label"], asleep["replicas"]) == ("Scaled to zero", 0)
    assert asleep["desired_state"] == "active" and asleep["is_production"]
    # Its replica is unrouted first and stopped once its requests are done: counted until then.
    eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == 0)
    eventually(lambda: not live_processes_in(sessions))

    # A request to the deployment at zero parks through WAKING_UP and is answered.
    assert ok(cp.client.post(f"/model-{model_id}/production/predict", json={})) == {"ok": True}
    awake = deployment_now(cp, deployment)
    assert awake["status"] in ("ACTIVE", "SCALED_TO_ZERO") and awake["replicas"] in (0, 1), awake
    log = build_log(cp, deployment)
    assert "scaled to zero: no request for 2 s (scale_down_delay)" in log and "waking up: a request arrived" in log, log
    # And idle again, it goes back to zero.
    cp.wait_for_status(model_id, deployment["id"], "SCALED_TO_ZERO", timeout=120)
    ok(cp.client.delete(f"/v1/models/{model_id}"))


# -- the CLI ------------------------------------------------------------------------------------


def test_the_cli_shows_and_updates_the_settings_partially_and_names_a_bad_value(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from truss_cli.cli.app import app
    from truss_cli.client.remotes import add_remote, trussrc_path

    deployment = push_active(cp, tmp_path, "scalecli")
    home = tmp_path / "home"
    home.mkdir()
    add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
    env = {"HOME": str(home), "COLUMNS": "80", "TRUSS_CACHE_DIR": str(home / "cache")}

    def truss(*args: str) -> Any:
        return CliRunner().invoke(app, ["deployments", "autoscaling", "--model", "scalecli", *args], env=env)

    updated = truss("production", "--max-replica", "4", "--scale-down-delay", "60")
    assert updated.exit_code == 0, updated.output
    assert "Autoscaling settings of deployment production of model scalecli: updated" in updated.stdout
    assert any(line.split()[:2] == ["max_replica", "4"] for line in updated.stdout.splitlines()), updated.stdout
    again = truss("production", "--max-replica", "4")
    assert again.exit_code == 0 and "unchanged" in again.stdout, again.output
    shown = json.loads(truss(deployment["id"], "-o", "json").stdout)
    assert (shown["autoscaling_settings"]["max_replica"], shown["autoscaling_settings"]["scale_down_delay"]) == (4, 60)
    assert shown["autoscaling_settings"]["min_replica"] == 0  # untouched

    bad = truss("production", "--min-replica", "9")
    assert bad.exit_code != 0 and "max_replica (4) must be at least min_replica (9)" in bad.output, bad.output
    unknown = truss("deployment-9", "--max-replica", "2")
    assert unknown.exit_code != 0 and deployment["id"] in unknown.output, unknown.output
    ok(cp.client.delete(f"/v1/models/{deployment['model_id']}"))


def test_desired_replicas_set_to_zero_scales_an_active_deployment_to_zero_at_once(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    # What a promotion's SCALE_TO_ZERO cleanup does to the previous deployment (task A): no
    # waiting for scale_down_delay (900 s here, the default), and a request still wakes it.
    from controlplane_checks import opened_store

    deployment = push_active(cp, tmp_path, "scaleasked")
    model_id = deployment["model_id"]
    # Load in the autoscaler's window: left to it, this load would want a replica.
    assert ok(cp.client.post(f"/model-{model_id}/production/predict", json={"sleep": 1})) == {"ok": True}
    with opened_store(cp) as store:
        store.deployments.set_desired(deployment["id"], replicas=0)
    asleep = cp.wait_for_status(model_id, deployment["id"], "SCALED_TO_ZERO", timeout=120)
    assert asleep["replicas"] == 0
    assert ok(cp.client.post(f"/model-{model_id}/production/predict", json={})) == {"ok": True}
    assert deployment_now(cp, deployment)["replicas"] == 1
    ok(cp.client.delete(f"/v1/models/{model_id}"))


def test_raising_min_replica_wakes_a_deployment_at_zero_and_another_change_does_not(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    # A user who sets min_replica 2 on a sleeping deployment expects two replicas, not a
    # deployment that waits for a request (min_replica_wake.py). A change that does not raise
    # the floor leaves it asleep (a promotion's SCALE_TO_ZERO cleanup must stay asleep).
    deployment = push_active(cp, tmp_path, "minwake")
    model_id = deployment["model_id"]

    def asleep() -> None:
        cp.wait_for_status(model_id, deployment["id"], "SCALED_TO_ZERO", timeout=120)
        eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == 0)

    def awake_with(replicas: int) -> None:
        cp.wait_for_status(model_id, deployment["id"], "ACTIVE", timeout=120)
        eventually(lambda: deployment_now(cp, deployment)["active_replica_count"] == replicas)
        assert len(_replica_ids(cp, deployment)) == replicas  # no other replica left running

    assert ok(cp.client.patch(settings_path(deployment), json={
        "min_replica": 0, "autoscaling_window": 10, "scale_down_delay": 2}))["status"] == "ACCEPTED"
    asleep()

    # Through the CLI, as a user does it: it says so.
    from typer.testing import CliRunner

    from truss_cli.cli.app import app
    from truss_cli.client.remotes import add_remote, trussrc_path

    home = tmp_path / "home"
    home.mkdir()
    add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
    raised = CliRunner().invoke(app, ["deployments", "autoscaling", "--model", "minwake", "production",
                                      "--min-replica", "2", "--max-replica", "2"],
                                env={"HOME": str(home), "COLUMNS": "80", "TRUSS_CACHE_DIR": str(home / "cache")})
    assert raised.exit_code == 0, raised.output
    assert "It was scaled to zero: waking up with 2 replica(s) (min_replica)" in raised.stdout, raised.stdout
    # The route ticked before answering: no request was needed to leave zero.
    assert deployment_now(cp, deployment)["status"] in ("WAKING_UP", "ACTIVE")
    awake_with(2)
    assert "waking up: min_replica raised to 2" in build_log(cp, deployment)

    # Back to zero; then a change that does not raise min_replica leaves it there.
    ok(cp.client.patch(settings_path(deployment), json={"min_replica": 0}))
    asleep()
    other = ok(cp.client.patch(settings_path(deployment), json={"max_replica": 3}))
    assert (other["status"], other["waking_up"]) == ("ACCEPTED", False), other
    assert deployment_now(cp, deployment)["status"] == "SCALED_TO_ZERO"  # the route's tick kept it there

    # The environment's own settings raise it too (they win over the deployment's).
    env = ok(cp.client.patch(f"/v1/models/{model_id}/environments/production",
                             json={"autoscaling_settings": {"min_replica": 1, "max_replica": 3}}))
    assert (env["status"], env["waking_up"]) == ("ACCEPTED", True), env
    awake_with(1)
    assert "waking up: min_replica raised to 1" in build_log(cp, deployment)
    assert ok(cp.client.post(f"/model-{model_id}/production/predict", json={})) == {"ok": True}
    ok(cp.client.delete(f"/v1/models/{model_id}"))
