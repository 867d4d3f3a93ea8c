"""Routing targets from rows (controlplane/targets.py): environments, production, a promotion's split."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from truss_cli.controlplane.targets import build_targets


@dataclass
class Dep:
    id: str
    model_id: str = "m"
    is_production: bool = False
    is_development: bool = False
    status: str = "ACTIVE"
    desired_state: str = "active"
    config: dict = field(default_factory=dict)


@dataclass
class Env:
    id: str
    name: str
    current_deployment_id: Optional[str]
    model_id: str = "m"


@dataclass
class Promo:
    candidate_deployment_id: str
    previous_deployment_id: Optional[str]
    percent_traffic_to_new_version: int
    finished_at: Optional[datetime] = None


DEPLOYMENTS = [Dep("dev", is_development=True), Dep("d1", is_production=True), Dep("d2"), Dep("d3")]


def test_each_environment_serves_its_current_deployment_and_production_is_the_production_environment():
    targets = build_targets(["m"], DEPLOYMENTS, [Env("e1", "production", "d1"), Env("e2", "staging", "d2"),
                                                 Env("e3", "qa", None)], {})["m"]
    assert targets == {
        "deployment/dev": [("dev", 1.0)], "development": [("dev", 1.0)], "deployment/d1": [("d1", 1.0)],
        "deployment/d2": [("d2", 1.0)], "deployment/d3": [("d3", 1.0)],
        "production": [("d1", 1.0)], "environments/production": [("d1", 1.0)], "environments/staging": [("d2", 1.0)],
        "environments/qa": [],
    }  # qa serves nothing: an empty target, so the gateway answers ENVIRONMENT_EMPTY


def test_a_promotion_under_way_splits_and_a_finished_one_does_not():
    envs = [Env("e1", "production", "d1"), Env("e2", "staging", "d2")]
    rolling = {"e1": Promo("d3", "d1", 30)}
    targets = build_targets(["m"], DEPLOYMENTS, envs, rolling)["m"]
    assert targets["production"] == targets["environments/production"] == [("d1", 0.7), ("d3", 0.3)]
    assert targets["environments/staging"] == [("d2", 1.0)]
    done = {"e1": Promo("d3", "d1", 30, finished_at=datetime.now(timezone.utc))}
    assert build_targets(["m"], DEPLOYMENTS, envs, done)["m"]["production"] == [("d1", 1.0)]
    assert build_targets(["m"], DEPLOYMENTS, envs, {"e1": Promo("d3", "d1", 100)})["m"]["production"] == [("d3", 1.0)]


def test_the_production_environment_row_decides_over_a_stale_flag_and_models_stay_apart():
    # Production's environment row serves nothing: an empty production target (the gateway
    # answers ENVIRONMENT_EMPTY), whatever a flag says.
    targets = build_targets(["m", "other"], DEPLOYMENTS + [Dep("x", model_id="other", is_production=True)],
                            [Env("e1", "production", None), Env("e2", "staging", None)], {})
    assert targets["m"]["production"] == targets["m"]["environments/production"] == []
    assert targets["m"]["environments/staging"] == []
    assert targets["other"] == {"deployment/x": [("x", 1.0)], "production": [("x", 1.0)]}  # no env row: the flag
    assert build_targets([], DEPLOYMENTS, [Env("e1", "production", "d1")], {}) == {}


def test_while_production_serves_nothing_it_waits_for_the_deployment_that_will_take_it():
    pushed = {"production_if_empty": True}
    empty = [Env("e1", "production", None)]
    # The first push, building: production's requests wait for it (it takes production once ACTIVE).
    building = build_targets(["m"], [Dep("d1", status="BUILDING", config=pushed)], empty, {})["m"]
    assert building["production"] == building["environments/production"] == [("d1", 1.0)]
    # It failed: production serves nothing (ENVIRONMENT_EMPTY) until the next one is on its way.
    failed = Dep("d1", status="BUILD_FAILED", config=pushed)
    assert build_targets(["m"], [failed], empty, {})["m"]["production"] == []
    targets = build_targets(["m"], [failed, Dep("d2", status="DEPLOYING", config=pushed)], empty, {})["m"]
    assert targets["production"] == [("d2", 1.0)]
    # Pushed into staging, or inactive: not production's.
    staged = Dep("d3", status="BUILDING", config={"promote_when_active": True, "promote_environment": "staging"})
    inactive = Dep("d4", desired_state="inactive", config=pushed)
    assert build_targets(["m"], [staged, inactive], empty, {})["m"]["production"] == []
    # push --promote into an empty production waits for it too; a served production ignores all this.
    promoted = Dep("d5", status="BUILDING", config={"promote_when_active": True})
    assert build_targets(["m"], [promoted], empty, {})["m"]["production"] == [("d5", 1.0)]
    assert build_targets(["m"], [Dep("d0"), promoted], [Env("e1", "production", "d0")], {})["m"]["production"] == [
        ("d0", 1.0)]
