"""The control plane end to end: a real server process, real HTTP, real replicas (process runtime)."""

from __future__ import annotations

from pathlib import Path


from controlplane_support import running_controlplane, start_controlplane, stop_replicas
from conftest import write_model_dir

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"


def test_every_management_route_needs_a_key_and_errors_are_json(tmp_path: Path) -> None:
    with running_controlplane(tmp_path / "cp") as cp:
        anonymous = cp.client_for(None)
        response = anonymous.get("/v1/models")
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert cp.client_for("tk_nope.wrong").get("/v1/server").status_code == 401
        assert anonymous.get("/docs").status_code == 200

        server = cp.client.get("/v1/server").json()
        assert server["runtime"] == "process" and server["models"] == 0

        invoke = cp.client.post("/v1/api_keys", json={"scope": "invoke"}).json()["key"]
        forbidden = cp.client_for(invoke).get("/v1/models")
        assert forbidden.status_code == 403 and forbidden.json()["error_code"] == "FORBIDDEN"

        missing = cp.client.get("/v1/models/nope")
        assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"


def test_push_hello_serves_predictions_then_survives_a_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "cp"
    cp = start_controlplane(data_dir)
    try:
        created = cp.push(HELLO)
        # Production once ACTIVE (a first deployment that failed would leave production empty).
        assert created["status"] == "BUILDING" and not created["is_production"]
        model_id = created["model_id"]
        active = cp.wait_for_status(model_id, created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert active["status"] == "ACTIVE" and active["is_production"], active
        predict = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "Ada"})
        assert predict.status_code == 200, predict.text
        assert "Ada" in predict.text

        # A second push of the same directory uploads nothing new.
        assert cp.client.post("/v1/blobs/missing", json={"digests": []}).json() == {"missing": []}

        models = cp.client.get("/v1/models").json()["models"]
        assert [m["name"] for m in models] == ["hello"]
        assert models[0]["production_deployment_id"] == created["id"]
        logs = cp.client.get("/v1/models/hello/deployments/production/logs", params={"kind": "build"})
        assert logs.headers["content-type"].startswith("application/x-ndjson") and logs.text

        replica_pids = {p.name for p in (data_dir / "replicas").iterdir()}
        cp.kill()
        cp = start_controlplane(data_dir, admin_key=cp.admin_key)
        # Its first request already routes: the restarted gateway knows the models before it serves.
        first = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "Ada"})
        assert first.status_code == 200 and "Ada" in first.text, first.text
        again = cp.wait_for_status(model_id, created["id"], "ACTIVE")
        assert again["status"] == "ACTIVE"
        predict = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "Grace"})
        assert predict.status_code == 200 and "Grace" in predict.text
        # Re-adopted, not restarted: no new replica directory appeared.
        assert {p.name for p in (data_dir / "replicas").iterdir()} == replica_pids

        deleted = cp.client.delete(f"/v1/models/{model_id}")
        assert deleted.json() == {"id": model_id, "deleted": True}
        gone = cp.client.post(f"/model-{model_id}/production/predict", json={"name": "x"})
        assert gone.status_code in (404, 503)
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


def test_a_model_that_fails_to_load_is_deploy_failed_with_its_cause(tmp_path: Path) -> None:
    model_dir = write_model_dir(
        tmp_path / "broken",
        """
        class Model:
            def load(self):
                raise RuntimeError("the weights are missing")

            def predict(self, request):
                return request
        """,
        "model_name: broken\npython_version: py311\n",
    )
    with running_controlplane(tmp_path / "cp") as cp:
        created = cp.push(model_dir)
        failed = cp.wait_for_status(created["model_id"], created["id"], "DEPLOY_FAILED", "ACTIVE", "BUILD_FAILED")
        assert failed["status"] == "DEPLOY_FAILED"
        assert "weights are missing" in failed["status_detail"]
