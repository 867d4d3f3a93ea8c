"""Canary promotions (deprecated, still supported; issue 11) end to end, as a user drives them:
a real control plane process, real replicas (process runtime), the CLI in process (CliRunner)
against it.

`ramp_up_while_promoting` with `ramp_up_duration_seconds` (at least 10 s, the contract's
minimum): once the candidate has the previous deployment's minimum replicas READY, traffic
moves in 10 equal stages over the window, then SUCCEEDED. A cancel returns all traffic to the
previous deployment at once. The CLI says canary promotions are deprecated, pointing to
rolling deployments, wherever a canary is started, set up or followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from conftest import write_model_dir
from controlplane_checks import eventually, ok
from controlplane_support import ControlPlaneProcess, running_controlplane
from trickle import Trickle
from truss_cli.cli.app import app
from truss_cli.client.remotes import add_remote, trussrc_path

MODEL = "canaried"
VERSIONED_MODEL = "class Model:\n    def predict(self, request):\n        return {'version': VERSION}\n"
NOTICE = "canary promotions are deprecated: use rolling deployments"
runner = CliRunner()


class Setup:
    def __init__(self, cp: ControlPlaneProcess, home: Path, made: dict[str, Any]):
        self.cp, self.home, self.made = cp, home, made

    def truss(self, *args: str) -> Any:
        return runner.invoke(app, list(args), env={"HOME": str(self.home), "COLUMNS": "200",
                                                   "TRUSS_CACHE_DIR": str(self.home / "cache")})

    def production(self) -> dict[str, Any]:
        return ok(self.cp.client.get(f"/v1/models/{MODEL}/environments/production"))

    def promotion(self) -> dict[str, Any]:
        return ok(self.cp.client.get(f"/v1/models/{MODEL}/environments/production/promotion"))["promotion"]

    def answer(self) -> str:
        return ok(self.cp.client.post(f"/model-{self.made['model_id']}/production/predict", json={}))["version"]

    def trickle(self) -> Trickle:
        return Trickle(self.cp, f"/model-{self.made['model_id']}/production/predict")

    def canary(self, seconds: int) -> None:
        """Production promotes by canary over `seconds`, set as a user sets it (with the notice)."""
        done = self.truss("environments", "update", "production", "--model", MODEL, "--promotion-settings",
                          f'{{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": {seconds}}}')
        assert done.exit_code == 0, done.output
        assert NOTICE in done.stderr, done.output

    def promote(self, version: str) -> str:
        done = self.truss("deployments", "promote", "--model", MODEL, self.made[version]["name"])
        assert done.exit_code == 0, done.output
        assert NOTICE in done.stderr, done.output
        return done.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("canary")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        made: dict[str, Any] = {}
        for version in ("v1", "v2"):
            directory = write_model_dir(base / version, VERSIONED_MODEL.replace("VERSION", repr(version)),
                                        f"model_name: {MODEL}\npython_version: py311\n")
            created = cp.push(directory, MODEL)
            made[version] = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED",
                                               "DEPLOY_FAILED")
            assert made[version]["status"] == "ACTIVE", made[version]
        made["model_id"] = made["v1"]["model_id"]
        yield Setup(cp, home, made)


def test_cancel_during_a_canary_returns_all_traffic_at_once(setup: Setup) -> None:
    """v1 serves production (the model's first deployment); a canary to v2 over ten minutes
    stays in its first stage (10 %) while the test cancels it."""
    assert setup.production()["current_deployment"]["id"] == setup.made["v1"]["id"]
    setup.canary(600)
    with setup.trickle() as trickle:
        said = setup.promote("v2")
        assert "begun (canary" in said and "truss rollout status" in said, said
        eventually(lambda: (setup.promotion()["status"], setup.promotion()["percent_traffic_to_new_version"]) == (
            "RAMPING_UP", 10), timeout=60)
        eventually(lambda: (200, "v2") in trickle.answers, timeout=60)  # the canary's share reaches v2
        status = setup.truss("rollout", "status", "--model", MODEL)
        assert status.exit_code == 0 and NOTICE in status.stderr, status.output
        assert status.stdout.startswith("RAMPING_UP") and "10% to" in status.stdout, status.stdout

        done = setup.truss("rollout", "cancel", "--model", MODEL)
        seen = len(trickle.answers)
        assert done.exit_code == 0 and NOTICE in done.stderr, done.output
        assert done.stdout.startswith("CANCELED"), done.stdout  # not RAMPING_DOWN: all back at once
        canceled = setup.promotion()
        assert (canceled["status"], canceled["percent_traffic_to_new_version"]) == ("CANCELED", 0), canceled
        assert [setup.answer() for _ in range(10)] == ["v1"] * 10  # every request sent after the answer
        eventually(lambda: len(trickle.answers) >= seen + 20, timeout=60)
    assert not trickle.failures(), trickle.failures()
    # The trickle's request in flight while the cancel was answered may have gone to v2; none after.
    assert {version for _, version in trickle.answers[seen + 1:]} == {"v1"}
    assert setup.production()["current_deployment"]["id"] == setup.made["v1"]["id"]


def test_a_canary_moves_traffic_in_ten_equal_stages_to_succeeded(setup: Setup) -> None:
    """Over 20 s: stage i (2 s each) gives the candidate 10*i %; polled a few times a second,
    the reported split only goes up, in steps of 10, and ends SUCCEEDED at 100 %."""
    setup.canary(20)
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(setup.promotion())
        return seen[-1]["status"] in ("SUCCEEDED", "FAILED", "CANCELED")

    with setup.trickle() as trickle:
        said = setup.promote("v2")
        assert "begun (canary, RELEASING" in said, said
        eventually(finished, timeout=180)
    assert (seen[-1]["status"], seen[-1]["percent_traffic_to_new_version"]) == ("SUCCEEDED", 100), seen[-1]
    assert {view["kind"] for view in seen} == {"canary"}
    assert all("deprecated" in view["deprecation"] and "rolling_deploy" in view["deprecation"] for view in seen)
    percents = [view["percent_traffic_to_new_version"] for view in seen]
    assert percents == sorted(percents), percents
    assert set(percents) <= set(range(0, 101, 10)), percents
    ramping = [view for view in seen if view["status"] == "RAMPING_UP"]
    assert all(view["step"] * 10 == view["percent_traffic_to_new_version"] for view in ramping), ramping
    # Staged, not one jump: several of the stages between 0 and 100 were seen.
    assert len({view["percent_traffic_to_new_version"] for view in ramping} - {100}) >= 3, percents
    assert setup.production()["current_deployment"]["id"] == setup.made["v2"]["id"]
    eventually(lambda: setup.answer() == "v2", timeout=30)
    # Every request answered during the ramp, by both versions as the split moved.
    assert not trickle.failures(), trickle.failures()
    assert {version for _, version in trickle.answers} == {"v1", "v2"}
