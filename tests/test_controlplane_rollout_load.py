"""A rolling deploy under a steady load (issue 11): a real control plane (process runtime), two
deployments of one model answering {"version": "v1"} / {"version": "v2"} after 50 ms (so requests
are in flight at replicas that retire, and some wait at the gateway's concurrency cap of 1 per
replica), and a second process (benchmarks/load_generator.py) sending production predicts at a
fixed rate for the whole run.

Production's promotion settings ask for a rolling deploy with max_surge_percent 33 over T = 3
replicas (each deployment's min_replica and max_replica are 3): a step is ceil(3 x 33 %) = 1
replica, so three steps move 33 %, 66 % and 100 % of the traffic, each once the candidate's
replicas of the step are READY, each held for the stabilization time. The other deployment
starts every test scaled to zero (as a promotion's SCALE_TO_ZERO cleanup leaves it), so the
rollout must wake it.

What is asserted is what a user of the endpoint notices: no request fails (non-2xx or no answer)
while replicas come and go; the share of v2 answers in each window follows the split the API
reported at that time; pause holds the split; cancel brings everything back to v1. The share
is compared per reported percent, leaving out requests sent within LAG_SECONDS of a change the
API reported (the gateway follows the row at the reconciler's next tick), with a tolerance for
samples of a few dozen requests. No timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from conftest import write_model_dir
from controlplane_checks import eventually, ok, opened_store
from controlplane_support import ControlPlaneProcess, running_controlplane
from truss_cli.controlplane import rollouts

REPO = Path(__file__).resolve().parent.parent
LOAD_GENERATOR = REPO / "benchmarks" / "load_generator.py"
sys.path.insert(0, str(LOAD_GENERATOR.parent))
from load_generator import failed, read_results  # noqa: E402

REPLICAS = 3
STABILIZATION_SECONDS = 4
ROLLING = {"rolling_deploy": True,
           "rolling_deploy_config": {"max_surge_percent": 33, "stabilization_time_seconds": STABILIZATION_SECONDS}}
INSTANT = {"rolling_deploy": False}
RATE = 30  # requests per second from the load process
LAG_SECONDS = 1.0  # requests this close to a reported change are not judged
TOLERANCE = 25  # percentage points: a few dozen requests per window
MIN_JUDGED = 15  # requests a window needs to be judged at all

VERSIONED_MODEL = """
import time


class Model:
    def predict(self, request):
        time.sleep(0.05)  # in flight long enough to meet a retirement or the cap
        return {"version": VERSION}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("rollout-load") / "cp") as plane:
        yield plane


@pytest.fixture(scope="module")
def versions(cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two ACTIVE deployments of model `steady`, v1 (the first) serving production; both run
    REPLICAS replicas when awake."""
    root = tmp_path_factory.mktemp("models")
    made: dict[str, Any] = {}
    for version in ("v1", "v2"):
        model_dir = write_model_dir(root / version, VERSIONED_MODEL.replace("VERSION", repr(version)),
                                    "model_name: steady\npython_version: py311\n")
        created = cp.push(model_dir, "steady")
        deployment = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert deployment["status"] == "ACTIVE", deployment
        made[version] = deployment
    made["model_id"] = made["v1"]["model_id"]
    return made


# -- the API ------------------------------------------------------------------------------------


def deployment_now(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}"))


def set_scaling(cp: ControlPlaneProcess, deployment: dict[str, Any], **settings: Any) -> None:
    ok(cp.client.patch(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}/autoscaling_settings",
                       json=settings))


def set_promotion_settings(cp: ControlPlaneProcess, settings: dict[str, Any]) -> None:
    ok(cp.client.patch("/v1/models/steady/environments/production", json={"promotion_settings": settings}))


def production_current(cp: ControlPlaneProcess) -> Optional[str]:
    current = ok(cp.client.get("/v1/models/steady/environments/production"))["current_deployment"]
    return current["id"] if current else None


def promote(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.post("/v1/models/steady/environments/production/promote",
                             json={"deployment_id": deployment["id"]}))


def promotion_now(cp: ControlPlaneProcess) -> dict[str, Any]:
    return ok(cp.client.get("/v1/models/steady/environments/production/promotion"))["promotion"]


def control(cp: ControlPlaneProcess, word: str) -> dict[str, Any]:
    return ok(cp.client.post(f"/v1/models/steady/environments/production/{word}"))


def production_answer(cp: ControlPlaneProcess, model_id: str) -> str:
    return ok(cp.client.post(f"/model-{model_id}/production/predict", json={}))["version"]


def ready_replicas(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> int:
    with opened_store(cp) as store:
        return rollouts.ready_replicas(store, deployment["id"])


def serving(cp: ControlPlaneProcess, versions: dict[str, Any], current: str, other: str) -> None:
    """The start of every test: production served by `current` with REPLICAS READY replicas,
    `other` scaled to zero, no promotion in progress, production's settings rolling. (After
    the test before, this is usually so already.)"""
    with opened_store(cp) as store:
        environment = rollouts.promotions_of(store).environment(versions["model_id"], "production")
        if rollouts.promotions_of(store).unfinished(environment.id):
            rollouts.apply_control(store, versions["model_id"], "production", "force_cancel")
    for version in (current, other):
        set_scaling(cp, versions[version], min_replica=REPLICAS, max_replica=REPLICAS)
    if production_current(cp) != versions[current]["id"]:
        set_promotion_settings(cp, INSTANT)
        promote(cp, versions[current])
        assert production_current(cp) == versions[current]["id"]
    if deployment_now(cp, versions[other])["status"] != "SCALED_TO_ZERO":
        # Asleep with its floor kept, as a promotion's SCALE_TO_ZERO cleanup leaves a deployment
        # (raising min_replica on one at zero would wake it: docs/autoscaling.md). So promote
        # `other` and back, instantly; the first promotion's cleanup put `current` to sleep, and
        # a request wakes it.
        set_promotion_settings(cp, INSTANT)
        promote(cp, versions[other])
        eventually(lambda: deployment_now(cp, versions[current])["status"] == "SCALED_TO_ZERO", timeout=60)
        promote(cp, versions[current])
        eventually(lambda: deployment_now(cp, versions[other])["status"] == "SCALED_TO_ZERO", timeout=60)
        assert production_answer(cp, versions["model_id"]) == current
    set_promotion_settings(cp, ROLLING)
    eventually(lambda: ready_replicas(cp, versions[current]) == REPLICAS, timeout=120)
    eventually(lambda: ready_replicas(cp, versions[other]) == 0, timeout=60)


# -- the load and what the API reported meanwhile --------------------------------------------------


@dataclass
class Report:
    at: float  # epoch seconds, when the answer came back
    status: str
    percent: int
    promotion: dict[str, Any]


class LoadRun:
    """The load process, started before the rollout and stopped after it; the promotion as the
    API reported it, sampled by the test meanwhile."""

    def __init__(self, cp: ControlPlaneProcess, model_id: str, workdir: Path):
        self.cp = cp
        self.out = workdir / "results.jsonl"
        self.stop_file = workdir / "stop"
        self.stop_file.unlink(missing_ok=True)
        self.reports: list[Report] = []
        self.promotion_id: Optional[str] = None  # the rollout under test, once begun
        self.process = subprocess.Popen(
            [sys.executable, str(LOAD_GENERATOR), "--url", cp.url, "--key", cp.admin_key,
             "--path", f"/model-{model_id}/production/predict", "--rate", str(RATE), "--duration", "600",
             "--out", str(self.out), "--stop-file", str(self.stop_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample(self) -> Report:
        promotion = promotion_now(self.cp)
        if promotion is None or promotion["id"] != self.promotion_id:  # before it: all on the current one
            promotion = {"id": None, "status": "BEFORE", "percent_traffic_to_new_version": 0}
        report = Report(time.time(), promotion["status"], promotion["percent_traffic_to_new_version"], promotion)
        self.reports.append(report)
        return report

    def until(self, check, timeout: float = 180) -> Report:
        """Sample the promotion every ~0.2 s until `check(report)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.sample()
            if check(report):
                return report
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, f"still {report.status} {report.percent} % after {timeout} s"
            time.sleep(0.2)

    def hold(self, seconds: float) -> None:
        """Keep sampling for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(0.2)

    def stop(self) -> list[dict[str, Any]]:
        self.stop_file.write_text("")
        _, stderr = self.process.communicate(timeout=180)
        assert self.process.returncode == 0, stderr
        return read_results(str(self.out))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def percent_at(reports: list[Report], sent: float) -> Optional[int]:
    """The percent the API reported around `sent`, when it reported the same one from LAG_SECONDS
    before to LAG_SECONDS after (with a report on each side); None near a change."""
    around = [r.percent for r in reports if sent - LAG_SECONDS <= r.at <= sent + LAG_SECONDS]
    before = any(r.at < sent - LAG_SECONDS for r in reports)
    after = any(r.at > sent + LAG_SECONDS for r in reports)
    if not around or not before or not after or len(set(around)) != 1:
        return None
    return around[0]


def candidate_share_by_percent(results: list[dict[str, Any]], reports: list[Report],
                               candidate: str) -> dict[int, tuple[int, int]]:
    """reported percent -> (answers of the candidate, answers judged)."""
    windows: dict[int, tuple[int, int]] = {}
    for result in results:
        percent = percent_at(reports, result["sent"])
        if percent is None:
            continue
        hits, total = windows.get(percent, (0, 0))
        windows[percent] = (hits + (result["version"] == candidate), total + 1)
    return windows


def assert_split_followed(windows: dict[int, tuple[int, int]], expected_percents: set[int]) -> None:
    judged = {p for p, (_, total) in windows.items() if total >= MIN_JUDGED}
    assert expected_percents <= judged, f"windows judged: {windows}"
    for percent in judged:
        hits, total = windows[percent]
        share = 100 * hits / total
        if percent in (0, 100):  # all or nothing: exactly
            assert share == percent, (percent, windows)
        else:
            assert abs(share - percent) <= TOLERANCE, (percent, windows)


def assert_none_failed(results: list[dict[str, Any]]) -> None:
    failures = [r for r in results if failed(r)]
    assert results and not failures, f"{len(failures)} of {len(results)} failed: {failures[:5]}"


@pytest.fixture
def load(cp: ControlPlaneProcess, versions: dict[str, Any], tmp_path: Path) -> Iterator[LoadRun]:
    run = LoadRun(cp, versions["model_id"], tmp_path)
    try:
        yield run
    finally:
        run.kill()


def begin_rollout(cp: ControlPlaneProcess, load: LoadRun, candidate: dict[str, Any]) -> None:
    load.hold(2)  # some answers before the rollout: all from the current deployment
    answer = promote(cp, candidate)["in_progress_promotion"]
    assert (answer["kind"], answer["status"]) == ("rolling", "RELEASING"), answer
    load.promotion_id = answer["id"]
    # It was at zero: the promotion itself must wake it (no request reaches it before it is READY).
    eventually(lambda: deployment_now(cp, candidate)["status"] != "SCALED_TO_ZERO", timeout=30)


# -- the tests ------------------------------------------------------------------------------------------


def test_a_rolling_deploy_under_load_fails_no_request_and_the_answers_follow_the_split(
        cp: ControlPlaneProcess, versions: dict[str, Any], load: LoadRun):
    serving(cp, versions, current="v1", other="v2")
    begin_rollout(cp, load, versions["v2"])
    load.until(lambda r: r.status in ("SUCCEEDED", "FAILED", "CANCELED"))
    load.hold(3)  # answers after the end: v2 only
    results = load.stop()

    assert load.reports[-1].status == "SUCCEEDED", load.reports[-1].promotion
    assert_none_failed(results)
    # The steps the API reported, in order: 0 (RELEASING), 33, 66, then 100.
    percents = [r.percent for r in load.reports]
    assert percents == sorted(percents), percents
    assert {0, 33, 66, 100} <= set(percents), percents
    assert load.reports[-1].promotion["steps"] == 3
    assert_split_followed(candidate_share_by_percent(results, load.reports, "v2"), {0, 33, 66, 100})

    assert production_current(cp) == versions["v2"]["id"]
    assert {production_answer(cp, versions["model_id"]) for _ in range(20)} == {"v2"}
    # v1's cleanup (SCALE_TO_ZERO, the default): no replica left.
    assert eventually(lambda: deployment_now(cp, versions["v1"])["status"] == "SCALED_TO_ZERO", timeout=60)
    eventually(lambda: ready_replicas(cp, versions["v1"]) == 0, timeout=60)


def test_pause_holds_the_split_and_resume_goes_on_to_succeeded(
        cp: ControlPlaneProcess, versions: dict[str, Any], load: LoadRun):
    serving(cp, versions, current="v2", other="v1")
    begin_rollout(cp, load, versions["v1"])
    load.until(lambda r: r.percent == 33)
    answer = control(cp, "pause_promotion")  # inside step 1's wait: pending until it ends
    assert answer["status"] == "PAUSED", answer
    paused = load.until(lambda r: r.status == "PAUSED")
    held_from = time.time()
    load.hold(STABILIZATION_SECONDS + 4)  # longer than a step's wait: a paused rollout takes none
    held_to = time.time()
    during = [r for r in load.reports if held_from <= r.at <= held_to]
    assert {(r.status, r.percent, r.promotion["step"]) for r in during} == {("PAUSED", 33, 1)}, during[-1].promotion
    for report in during:  # the replica counts hold too
        assert report.promotion["candidate_deployment"]["rollout_replicas"] == 1
        assert report.promotion["previous_deployment"]["rollout_replicas"] == REPLICAS
    assert paused.promotion["requested_action"] is None
    resumed = control(cp, "resume_promotion")
    assert resumed["status"] == "RAMPING_UP", resumed
    load.until(lambda r: r.status in ("SUCCEEDED", "FAILED", "CANCELED"))
    load.hold(2)
    results = load.stop()

    assert load.reports[-1].status == "SUCCEEDED", load.reports[-1].promotion
    assert_none_failed(results)
    # The answers while paused: still about a third from v1 (the candidate here).
    paused_answers = [r for r in results if held_from + LAG_SECONDS <= r["sent"] <= held_to - LAG_SECONDS]
    share = 100 * sum(r["version"] == "v1" for r in paused_answers) / len(paused_answers)
    assert len(paused_answers) >= MIN_JUDGED and abs(share - 33) <= TOLERANCE, (share, len(paused_answers))
    assert_split_followed(candidate_share_by_percent(results, load.reports, "v1"), {0, 33, 66, 100})
    assert production_current(cp) == versions["v1"]["id"]
    assert {production_answer(cp, versions["model_id"]) for _ in range(20)} == {"v1"}


def test_cancel_mid_rollout_returns_to_v1_without_a_failed_request(
        cp: ControlPlaneProcess, versions: dict[str, Any], load: LoadRun):
    serving(cp, versions, current="v1", other="v2")
    begin_rollout(cp, load, versions["v2"])
    load.until(lambda r: r.percent == 66)  # step 2: v1 gave one replica up already
    answer = control(cp, "cancel_promotion")  # a ramp down, at the end of step 2's wait
    assert answer["status"] == "RAMPING_DOWN", answer
    load.until(lambda r: r.status in ("SUCCEEDED", "FAILED", "CANCELED"))
    load.hold(3)  # answers after the end: v1 only
    results = load.stop()

    assert load.reports[-1].status == "CANCELED", load.reports[-1].promotion
    assert "RAMPING_DOWN" in {r.status for r in load.reports}
    assert_none_failed(results)
    windows = candidate_share_by_percent(results, load.reports, "v2")
    assert_split_followed(windows, {0, 33, 66})
    ended = max(r.at for r in load.reports if r.status != "CANCELED")
    after = [r for r in results if r["sent"] > ended + LAG_SECONDS]
    assert after and {r["version"] for r in after} == {"v1"}
    assert production_current(cp) == versions["v1"]["id"]
    assert {production_answer(cp, versions["model_id"]) for _ in range(20)} == {"v1"}
