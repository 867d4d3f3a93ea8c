"""One push end to end on the docker runtime: an image built, a container serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane_support import running_controlplane

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"

pytestmark = pytest.mark.docker


def test_push_and_predict_on_docker(tmp_path: Path) -> None:
    with running_controlplane(tmp_path / "cp", runtime="docker") as cp:
        assert cp.client.get("/v1/server").json()["runtime"] == "docker"
        created = cp.push(HELLO)
        try:
            active = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
            assert active["status"] == "ACTIVE", active
            answer = cp.client.post(f"/model-{created['model_id']}/production/predict", json={"name": "Docker"})
            assert answer.status_code == 200 and "Docker" in answer.text
        finally:
            cp.client.delete(f"/v1/models/{created['model_id']}")
