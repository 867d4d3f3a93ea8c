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
import signal
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
from pty_terminal import PtyCommand
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

    def ramping_up(self) -> None:
        """Begun rolling (one-hour waits) and past its single step: RAMPING_UP, 100 % to deployment-2."""
        self.begin(ROLLING)
        eventually(lambda: self.status_line().startswith("RAMPING_UP"), timeout=30)

    def back_to_v1(self) -> None:
        """v1 serving production again, for the next test (instant: it ends in the same call)."""
        with opened_store(self.cp) as store:
            put_environment(store, self.made["model_id"], "production", self.made["v2"], {})
            rollouts.begin_promotion(store, self.made["model_id"], "production", self.made["v1"])

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
    setup.back_to_v1()


def test_canary_prints_the_deprecation_notice_and_json_output_is_the_answer(setup: Setup) -> None:
    setup.begin(CANARY)
    try:
        done = setup.truss("rollout", "status", "-m", "rolled", "-o", "json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["promotion"]["kind"] == "canary"
        assert "canary promotions are deprecated: use rolling deployments" in done.stderr
        # Its ramp (its plan's ten minutes) is the timed wait the promotion object counts down.
        eventually(lambda: "RAMPING_UP" in setup.status_line(), timeout=30)
        promotion = json.loads(setup.truss("rollout", "status", "-m", "rolled", "-o", "json").stdout)["promotion"]
        assert (promotion["ramp_up_duration_seconds"], promotion["stabilization_time_seconds"]) == (600, None)
        assert 500 <= promotion["seconds_left_in_phase"] <= 600, promotion
        done = setup.truss("rollout", "pause", "-m", "rolled")
        assert done.exit_code != 0 and "only a rolling promotion can be paused" in done.stderr
        done = setup.truss("rollout", "cancel", "-m", "rolled", "-o", "json")  # canary: all back at once
        assert done.exit_code == 0 and json.loads(done.stdout)["status"] == "CANCELED"
    finally:
        setup.end()


def Terminal(setup: Setup, *args: str, columns: int = 120) -> PtyCommand:
    """A truss command with stdout on a pseudo-terminal (a user's shell), stderr on a pipe."""
    return PtyCommand(args, {**setup.env(), "PYTHONPATH": str(REPO_ROOT)}, columns=columns, stderr_to_pipe=True,
                      cwd=REPO_ROOT)


def test_status_watch_on_a_terminal_is_a_live_view_that_ends_with_the_final_status(setup: Setup) -> None:
    setup.ramping_up()
    # The environment's wait shortened mid-rollout: the promotion keeps its own plan (the hour),
    # and so does the countdown below (it is the server's, not a guess from the settings now).
    with opened_store(setup.cp) as store:
        put_environment(store, setup.made["model_id"], "production", setup.made["v1"],
                        {**ROLLING, "rolling_deploy_config": {**ROLLING["rolling_deploy_config"],
                                                              "stabilization_time_seconds": 60}})
    # Ctrl-C stops the watching only, and says so.
    interrupted = Terminal(setup, "rollout", "status", "-m", "rolled", "--watch", "--environment", "production")
    try:
        interrupted.wait_for(r"Phase     ")
        interrupted.process.send_signal(signal.SIGINT)
        assert interrupted.process.wait(timeout=30) == 130
        assert "Stopped watching; the promotion goes on" in interrupted.process.stderr.read()
    finally:
        interrupted.close()
    assert setup.status_line().startswith("RAMPING_UP")
    # An 80-column terminal: the bar narrows so that the split's line fits.
    narrow = Terminal(setup, "rollout", "status", "-m", "rolled", "--watch", columns=80)
    try:
        line = narrow.wait_for(r"Traffic   deployment-1 0% (█+) 100% deployment-2")
        assert len(line.group(0)) <= 80 and len(line.group(1)) < 40, line.group(0)
    finally:
        narrow.close()
    terminal = Terminal(setup, "rollout", "status", "-m", "rolled", "--watch")
    try:
        terminal.wait_for(r"RAMPING_UP  rolling promotion into production  step 1/1")
        # The split as a bar (all on the candidate), both sides' replicas, the wait counting down.
        terminal.wait_for(r"Traffic   deployment-1 0% █{40} 100% deployment-2")
        # (deployment-1: 0 READY when an earlier test left it scaled to zero; nothing wakes it here)
        terminal.wait_for(r"Replicas  previous deployment-1 [01]/1 ready, candidate deployment-2 1/1 ready")
        terminal.wait_for(r"Phase     stabilizing for \d+s, 5\dm \d\ds left")
        terminal.wait_for(r"stabilizing for ([3-9]|\d\d+)s")  # long enough to tell from a restart
        # A pause asked inside the wait is pending; the wait's clock goes on, not from the pause.
        paused = setup.truss("rollout", "pause", "-m", "rolled")
        assert paused.exit_code == 0 and "at the end of the current stabilization wait" in paused.stdout
        after_pause = terminal.wait_for(r"Pending   pause").end()
        clock = terminal.wait_for(r"stabilizing for (\d+)s", start=after_pause)
        assert int(clock.group(1)) >= 3, terminal.screen[after_pause:]
        done = setup.truss("rollout", "force-roll-forward", "-m", "rolled")
        assert done.exit_code == 0, done.output
        terminal.process.wait(timeout=60)  # it ends on its own once the promotion does
        last_line = terminal.screen.strip().splitlines()[-1]
    finally:
        terminal.close()
        setup.end()
    assert terminal.process.returncode == 0, terminal.process.stderr.read()
    assert last_line.startswith("SUCCEEDED") and "100% to deployment-2" in last_line, last_line
    setup.back_to_v1()


def test_status_watch_json_is_one_object_per_change_and_a_cancel_exits_non_zero(setup: Setup) -> None:
    setup.ramping_up()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "truss_cli", "rollout", "status", "-m", "rolled", "--watch", "-o", "json"],
        cwd=REPO_ROOT, env={**os.environ, **setup.env(), "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["promotion"]["status"] == "RAMPING_UP" and first["promotion"]["percent_traffic_to_new_version"] == 100
        done = setup.truss("rollout", "force-cancel", "-m", "rolled")
        assert done.exit_code == 0 and done.stdout.startswith("CANCELED"), done.output
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        setup.end()
    assert watcher.returncode == 1, err
    objects = [json.loads(line) for line in out.splitlines()]  # every line is a JSON object
    assert objects[-1]["promotion"]["status"] == "CANCELED"
    assert objects[-1]["promotion"]["percent_traffic_to_new_version"] == 0
    assert "the promotion of deployment-2 into production CANCELED" in err
    assert "truss deployments promote --model rolled deployment-2 --environment production" in err
