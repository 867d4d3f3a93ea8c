"""`truss rollout ...` against a real control plane (process runtime, real replicas), as a user
types it: status, `status --watch` following the promotion to its end, the controls, the
canary deprecation notice, and the error when nothing is in progress.

The promotion is begun on the control plane's own store with rollouts.begin_promotion (what the
promote routes call); the reconciler ticks the rollout driver, so it steps on its own: with one
replica in production the rolling promotion's single step moves all traffic once the candidate
is READY, then holds RAMPING_UP at 100 % through the hour's stabilization wait. Each test ends
what it began (`Setup.end`), so the next one begins afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT, write_model_dir
from controlplane_checks import eventually, ok, opened_store
from controlplane_support import ControlPlaneProcess, running_controlplane
from promotion_support import put_environment
from truss_cli.cli.app import app
from truss_cli.client.remotes import add_remote, trussrc_path
from truss_cli.controlplane import rollouts

runner = CliRunner()
ROLLING = {"rolling_deploy": True,
           "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 3600}}
CANARY = {"ramp_up_while_promoting": True, "ramp_up_duration_seconds": 600}
MODEL = "class Model:\n    def predict(self, request):\n        return {'version': VERSION}\n"


class Setup:
    def __init__(self, cp: ControlPlaneProcess, home: Path, made: dict[str, Any]):
        self.cp, self.home, self.made = cp, home, made

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "COLUMNS": "200", "TRUSS_CACHE_DIR": str(self.home / "cache")}

    def truss(self, *args: str) -> Any:
        return runner.invoke(app, list(args), env=self.env())

    def begin(self, settings: dict[str, Any]) -> None:
        with opened_store(self.cp) as store:
            put_environment(store, self.made["model_id"], "production", self.made["v1"], settings)
            rollouts.begin_promotion(store, self.made["model_id"], "production", self.made["v2"])

    def end(self) -> None:
        """Force-cancel a promotion left in progress (a failed assertion must not leak it)."""
        with opened_store(self.cp) as store:
            env = rollouts.promotions_of(store).environment(self.made["model_id"], "production")
            if rollouts.promotions_of(store).unfinished(env.id):
                rollouts.apply_control(store, self.made["model_id"], "production", "force_cancel")

    def status_line(self) -> str:
        done = self.truss("rollout", "status", "-m", "rolled")
        assert done.exit_code == 0, done.output
        return done.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("rollout-cli")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        made: dict[str, Any] = {}
        for version in ("v1", "v2"):
            directory = write_model_dir(base / version, MODEL.replace("VERSION", repr(version)),
                                        "model_name: rolled\npython_version: py311\n")
            created = cp.push(directory, "rolled")
            deployment = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED",
                                            "DEPLOY_FAILED")
            assert deployment["status"] == "ACTIVE", deployment
            made[version], made["model_id"] = deployment["id"], deployment["model_id"]
        with opened_store(cp) as store:  # task A's store makes production with the model
            put_environment(store, made["model_id"], "production", made["v1"])
        yield Setup(cp, home, made)


def test_nothing_in_progress_is_a_clear_error_and_status_says_never_promoted(setup: Setup) -> None:
    done = setup.truss("rollout", "status", "--model", "rolled")
    assert done.exit_code == 0 and "No promotion into production yet." in done.stdout
    done = setup.truss("rollout", "pause", "--model", "rolled")
    assert done.exit_code != 0
    assert "no promotion in progress in environment 'production'" in done.stderr
    assert "truss deployments promote" in done.stderr
    done = setup.truss("rollout", "status", "--model", "rolled", "--environment", "staging")
    assert done.exit_code != 0 and "production" in done.stderr  # the environments that exist


def test_status_watch_follows_the_promotion_until_it_ends(setup: Setup) -> None:
    setup.begin(ROLLING)
    try:
        # One replica: the single step moves all traffic once deployment-2's replica is READY.
        eventually(lambda: setup.status_line().startswith("RAMPING_UP"), timeout=30)
        assert "100% to deployment-2 1/1 ready" in setup.status_line()
        watcher = subprocess.Popen(
            [sys.executable, "-m", "truss_cli", "rollout", "status", "-m", "rolled", "--watch"],
            cwd=REPO_ROOT, env={**os.environ, **setup.env(), "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = watcher.stdout.readline()  # held there by the stabilization wait
            assert first.startswith("RAMPING_UP") and "step 1/1" in first, first
            done = setup.truss("rollout", "force-roll-forward", "-m", "rolled")
            assert done.exit_code == 0 and done.stdout.startswith("SUCCEEDED: rolled forward"), done.output
            out, _ = watcher.communicate(timeout=60)  # it ends on its own once the promotion does
        finally:
            if watcher.poll() is None:
                watcher.kill()
    finally:
        setup.end()
    assert watcher.returncode == 0
    assert out.splitlines()[-1].startswith("SUCCEEDED") and "100% to deployment-2" in out
    eventually(lambda: ok(setup.cp.client.post(f"/model-{setup.made['model_id']}/production/predict",
                                                json={}))["version"] == "v2", timeout=30)
    # back to v1 serving, for the next test (instant: it ends in the same call)
    with opened_store(setup.cp) as store:
        put_environment(store, setup.made["model_id"], "production", setup.made["v2"], {})
        rollouts.begin_promotion(store, setup.made["model_id"], "production", setup.made["v1"])


def test_canary_prints_the_deprecation_notice_and_json_output_is_the_answer(setup: Setup) -> None:
    setup.begin(CANARY)
    try:
        done = setup.truss("rollout", "status", "-m", "rolled", "-o", "json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["promotion"]["kind"] == "canary"
        assert "canary promotions are deprecated: use rolling deployments" in done.stderr
        done = setup.truss("rollout", "pause", "-m", "rolled")
        assert done.exit_code != 0 and "only a rolling promotion can be paused" in done.stderr
        done = setup.truss("rollout", "cancel", "-m", "rolled", "-o", "json")  # canary: all back at once
        assert done.exit_code == 0 and json.loads(done.stdout)["status"] == "CANCELED"
    finally:
        setup.end()
