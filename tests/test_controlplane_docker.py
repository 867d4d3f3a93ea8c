"""One push end to end on the docker runtime: an image built, a container serving; then
deactivated (no container left) and deleted (the deployment's image tag gone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane_support import running_controlplane
from docker_support import engine

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"

pytestmark = pytest.mark.docker


def test_push_predict_deactivate_and_delete_on_docker(tmp_path: Path) -> None:
    client = engine()
    with running_controlplane(tmp_path / "cp", runtime="docker") as cp:
        assert cp.client.get("/v1/server").json()["runtime"] == "docker"
        created = cp.push(HELLO)
        model_id, deployment_id = created["model_id"], created["id"]
        deleted = False
        try:
            active = cp.wait_for_status(model_id, deployment_id, "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
            assert active["status"] == "ACTIVE", active
            answer = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "Docker"})
            assert answer.status_code == 200 and "Docker" in answer.text

            def containers() -> list[dict]:
                return client.containers(all=True, filters={"label": f"truss.deployment-id={deployment_id}"})

            assert containers()
            assert cp.client.post(f"/v1/models/{model_id}/deployments/production/deactivate").status_code == 200
            inactive = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "Docker"})
            assert inactive.status_code == 404 and inactive.json()["error_code"] == "DEPLOYMENT_INACTIVE"
            cp.wait_for_status(model_id, deployment_id, "INACTIVE")
            assert containers() == []

            tags = [tag for image in client.images() for tag in image.get("RepoTags") or [] if tag.endswith(f":{deployment_id}")]
            assert len(tags) == 1, tags
            assert cp.client.delete(f"/v1/models/{model_id}").json() == {"id": model_id, "deleted": True}
            deleted = True
            assert not [tag for image in client.images() for tag in image.get("RepoTags") or [] if tag in tags]
        finally:
            if not deleted:
                cp.client.delete(f"/v1/models/{model_id}")
