"""One push end to end with the state in a real PostgreSQL server (`--database-url`)."""

from __future__ import annotations

from pathlib import Path

from controlplane_support import running_controlplane
from postgres_support import shared_server

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"


def test_push_and_predict_with_postgresql(tmp_path: Path) -> None:
    url = shared_server().create_database()
    with running_controlplane(tmp_path / "cp", database_url=url) as cp:
        assert cp.client.get("/v1/server").json()["database"].startswith("postgresql")
        created = cp.push(HELLO)
        active = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
        assert active["status"] == "ACTIVE", active
        answer = cp.client.post(f"/model-{created['model_id']}/production/predict", json={"name": "Postgres"})
        assert answer.status_code == 200 and "Postgres" in answer.text
