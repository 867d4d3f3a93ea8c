"""Secrets reach the model at replica start and never come back out; invoke keys are scoped;
a killed replica is replaced."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from controlplane_support import running_controlplane
from conftest import write_model_dir

SECRET_VALUE = "s3cr3t-value-never-shown"


def test_secret_reaches_the_model_never_a_response_and_scoped_keys(tmp_path: Path) -> None:
    model_dir = write_model_dir(
        tmp_path / "secretive",
        """
        class Model:
            def __init__(self, **kwargs):
                self._secrets = kwargs["secrets"]

            def predict(self, request):
                return {"matches": self._secrets["token"] == request["guess"]}
        """,
        "model_name: secretive\npython_version: py311\nsecrets:\n  token: null\n",
    )
    with running_controlplane(tmp_path / "cp") as cp:
        warned = cp.push(model_dir)
        assert warned["warnings"] == ["secret token is not set on this remote: truss secrets set token"]
        cp.client.delete(f"/v1/models/{warned['model_id']}").raise_for_status()

        assert cp.client.post("/v1/secrets", json={"name": "token", "value": SECRET_VALUE}).json() == {"name": "token"}
        listed = cp.client.get("/v1/secrets")
        assert [s["name"] for s in listed.json()["secrets"]] == ["token"] and SECRET_VALUE not in listed.text

        created = cp.push(model_dir)
        assert created["warnings"] == []
        model_id = created["model_id"]
        active = cp.wait_for_status(model_id, created["id"], "ACTIVE", "DEPLOY_FAILED", "BUILD_FAILED")
        assert active["status"] == "ACTIVE", active
        answer = cp.client.post(f"/model-{model_id}/production/predict", json={"guess": SECRET_VALUE})
        assert answer.json() == {"matches": True}

        scoped = cp.client.post("/v1/api_keys", json={"scope": "invoke", "models": ["secretive"]}).json()["key"]
        other = cp.client.post("/v1/api_keys", json={"scope": "invoke", "models": ["another"]}).json()["key"]
        assert cp.client_for(scoped).post(f"/model-{model_id}/production/predict", json={"guess": "x"}).json() == {"matches": False}
        refused = cp.client_for(other).post(f"/model-{model_id}/production/predict", json={"guess": "x"})
        assert refused.status_code == 403
        keys = cp.client.get("/v1/api_keys").json()["api_keys"]
        assert {k["scope"] for k in keys} == {"admin", "invoke"} and all("key" not in k for k in keys)
        prefix = next(k["prefix"] for k in keys if k["models"] == ["another"])
        assert cp.client.delete(f"/v1/api_keys/{prefix}").json() == {"prefix": prefix, "revoked": True}
        assert cp.client_for(other).post(f"/model-{model_id}/production/predict", json={}).status_code == 401

        # A replica killed under it is replaced, and predictions come back.
        handle = next((cp.data_dir / "replicas").glob("*/handle.json"))
        first = json.loads(handle.read_text())
        os.killpg(int(first["data"]["pid"]), signal.SIGKILL)
        # Not a wait for UNHEALTHY: it lasts only as long as the restart backoff. What a user
        # sees is a new replica process serving again.
        replacement = wait_for_replacement(cp.data_dir / "replicas", int(first["data"]["pid"]))
        assert replacement != int(first["data"]["pid"])
        again = cp.wait_for_status(model_id, created["id"], "ACTIVE")
        assert again["active_replica_count"] == 1
        assert cp.client.post(f"/model-{model_id}/production/predict", json={"guess": SECRET_VALUE}).json() == {"matches": True}

        logs = cp.client.get(f"/v1/models/{model_id}/deployments/production/logs").text
        assert SECRET_VALUE not in logs and SECRET_VALUE not in cp.log()
        # The control plane's own log: a line per call that changed state (never its body),
        # none per prediction (at any real load that would grow the log without bound).
        log = cp.log()
        assert "POST /v1/secrets -> 200" in log and "DELETE /v1/api_keys/" in log, log[-3000:]
        assert f"/model-{model_id}/production/predict" not in log, log[-3000:]
        assert "GET /v1/secrets" not in log  # reads are not logged either


def wait_for_replacement(replicas_dir: Path, dead_pid: int, timeout: float = 300) -> int:
    """The pid of a replica started in place of `dead_pid` (its handle.json names another pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for handle in replicas_dir.glob("*/handle.json"):
            try:
                pid = int(json.loads(handle.read_text())["data"]["pid"])
            except (OSError, ValueError, KeyError):
                continue  # being written
            if pid != dead_pid:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no replica replaced pid {dead_pid} within {timeout:.0f} s")
