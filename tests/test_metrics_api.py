"""`GET /v1/models/{model}/metrics` over a real control plane with real predicts: the counts are
the predicts made, a model's 5xx answers are its errors, each deployment has its own figures and
the model's are their sum, and bad references answer 404 saying what exists."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, running_controlplane

MODEL = "metrics-api"
FAILS_ON_ASK = """
class Model:
    def predict(self, request):
        if request.get("fail"):
            raise RuntimeError("asked to fail")
        return {"ok": True}
"""
SERIES = ("time", "requests", "errors", "requests_per_second", "error_rate", "p50_ms", "p95_ms", "replicas")


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    root = tmp_path_factory.mktemp("metrics-api")
    with running_controlplane(root / "cp") as plane:
        source = write_model_dir(root / MODEL, FAILS_ON_ASK, f"model_name: {MODEL}\npython_version: py311\n")
        for _ in range(2):  # the first becomes production; the second is only a deployment
            created = plane.push(source)
            deployment = plane.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED",
                                               "DEPLOY_FAILED")
            assert deployment["status"] == "ACTIVE", deployment
        yield plane


@pytest.fixture(scope="module")
def traffic(cp: ControlPlaneProcess) -> dict[str, Any]:
    """Predicts: 7 good and 3 failing to production, 4 good to the other deployment."""
    listed = cp.client.get(f"/v1/models/{MODEL}/deployments").raise_for_status().json()["deployments"]
    production = next(d for d in listed if d["is_production"])
    other = next(d for d in listed if not d["is_production"])
    mid = production["model_id"]
    for _ in range(7):
        assert cp.client.post(f"/model-{mid}/production/predict", json={}).status_code == 200
    for _ in range(3):
        assert cp.client.post(f"/model-{mid}/production/predict", json={"fail": True}).status_code == 500
    for _ in range(4):
        assert cp.client.post(f"/model-{mid}/deployment/{other['id']}/predict", json={}).status_code == 200
    return {"model_id": mid, "production": production, "other": other}


def metrics(cp: ControlPlaneProcess, model: str, **params: Any) -> dict[str, Any]:
    answer = cp.client.get(f"/v1/models/{model}/metrics", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def known(values: list) -> list:
    return [v for v in values if v is not None]


def test_the_models_figures_count_every_predict_and_its_5xx_answers(cp, traffic):
    body = metrics(cp, traffic["model_id"])
    assert body["model_name"] == MODEL and body["deployment"] is None
    assert body["step_seconds"] == 10
    series = body["series"]
    assert set(series) == set(SERIES)
    assert {len(series[name]) for name in SERIES} == {360}, "an hour of 10 s buckets, equal lengths"
    assert series["time"][0] == body["start"] and series["time"][1] - series["time"][0] == 10
    assert sum(known(series["requests"])) == 14
    assert sum(known(series["errors"])) == 3
    busy = [i for i, n in enumerate(series["requests"]) if n]
    assert busy, series["requests"]
    for i in busy:
        assert series["requests_per_second"][i] > 0
        assert 0 <= series["error_rate"][i] <= 1
        assert 0 < series["p50_ms"][i] <= series["p95_ms"][i]
    idle = [i for i, n in enumerate(series["requests"]) if n == 0]
    assert all(series["error_rate"][i] is None and series["p95_ms"][i] is None for i in idle)
    # Both deployments' replicas, summed.
    assert series["replicas"][-1] == 2
    assert {d["id"] for d in body["deployments"]} == {traffic["production"]["id"], traffic["other"]["id"]}
    production = next(d for d in body["deployments"] if d["id"] == traffic["production"]["id"])
    assert production["environment"] == "production" and production["name"] == traffic["production"]["name"]


def test_a_deployment_has_its_own_figures_by_id_name_or_environment(cp, traffic):
    mid = traffic["model_id"]
    for ref in (traffic["production"]["id"], "production", traffic["production"]["name"]):
        body = metrics(cp, mid, deployment=ref)
        assert body["deployment"]["id"] == traffic["production"]["id"]
        assert sum(known(body["series"]["requests"])) == 10
        assert sum(known(body["series"]["errors"])) == 3
        assert body["series"]["replicas"][-1] == 1
    other = metrics(cp, MODEL, deployment=traffic["other"]["id"])  # the model by name, as other /v1 reads
    assert sum(known(other["series"]["requests"])) == 4 and sum(known(other["series"]["errors"])) == 0
    rates = known(other["series"]["error_rate"])
    assert rates and set(rates) == {0}


def test_minutes_narrows_the_window(cp, traffic):
    body = metrics(cp, traffic["model_id"], minutes=5)
    assert len(body["series"]["time"]) == 30 and sum(known(body["series"]["requests"])) == 14
    answer = cp.client.get(f"/v1/models/{traffic['model_id']}/metrics", params={"minutes": 61})
    assert answer.status_code == 400 and answer.json()["error_code"] == "BAD_MINUTES", answer.text


def test_an_unknown_model_or_deployment_answers_404_naming_what_exists(cp, traffic):
    answer = cp.client.get("/v1/models/no-such-model/metrics")
    assert answer.status_code == 404, answer.text
    assert "no-such-model" in answer.json()["error"]
    assert any(MODEL in e for e in answer.json()["detail"]["existing"])
    answer = cp.client.get(f"/v1/models/{traffic['model_id']}/metrics", params={"deployment": "nope"})
    assert answer.status_code == 404, answer.text
    assert "nope" in answer.json()["error"]
    existing = " ".join(answer.json()["detail"]["existing"])
    assert traffic["production"]["id"] in existing and traffic["other"]["id"] in existing


def test_only_management_keys_read_metrics(cp, traffic):
    invoke = cp.client.post("/v1/api_keys", json={"scope": "invoke", "name": "metrics-invoke"})
    assert invoke.status_code == 201, invoke.text
    assert cp.client_for(invoke.json()["key"]).get(f"/v1/models/{traffic['model_id']}/metrics").status_code == 403
    assert cp.client_for(None).get(f"/v1/models/{traffic['model_id']}/metrics").status_code == 401
