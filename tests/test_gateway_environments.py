"""What the gateway answers for an environment that serves nothing yet (404 ENVIRONMENT_EMPTY
with how to fill it) and for an environment that does not exist (404 naming those that do),
over a real socket, on predict and on the wake route. (End to end through a control plane:
tests/test_controlplane_environments.py.)"""

from __future__ import annotations

from gateway_support import RunningGateway
from truss_cli.controlplane.gateway import RoutingTable


def table() -> RoutingTable:
    table = RoutingTable(park_timeout_seconds=5)
    # As targets.build_targets writes them: production serves d1, staging nothing yet.
    table.set_model("m1", {"production": [("d1", 1.0)], "environments/production": [("d1", 1.0)],
                           "environments/staging": [], "deployment/d1": [("d1", 1.0)]}, name="hello")
    return table


def test_an_empty_environment_answers_environment_empty_with_how_to_fill_it() -> None:
    with RunningGateway(table()) as gw:
        for response in (gw.client.post("/model-m1/environments/staging/predict", json={}),
                         gw.client.post("/model-m1/environments/staging/wake")):
            assert response.status_code == 404, response.text
            assert response.json() == {
                "error": "Not Found", "error_code": "ENVIRONMENT_EMPTY",
                "detail": "environment staging of model hello has no deployment yet",
                "hint": "truss push --environment staging, or truss deployments promote --model hello "
                        "DEPLOYMENT --environment staging"}


def test_an_empty_production_says_so_too() -> None:
    empty = RoutingTable(park_timeout_seconds=5)
    empty.set_model("m1", {"production": [], "environments/production": []}, name="hello")
    with RunningGateway(empty) as gw:
        answer = gw.client.post("/model-m1/production/predict", json={}).json()
        assert answer["error_code"] == "ENVIRONMENT_EMPTY"
        assert answer["detail"] == "environment production of model hello has no deployment yet"


def test_an_unknown_environment_lists_those_that_exist() -> None:
    with RunningGateway(table()) as gw:
        response = gw.client.post("/model-m1/environments/stagin/predict", json={})
        assert response.status_code == 404
        answer = response.json()
        assert answer["error_code"] == "NOT_FOUND"
        assert answer["detail"] == "model hello has no environment 'stagin'; its environments: production, staging"
        assert "truss environments create --model hello stagin" in answer["hint"]
