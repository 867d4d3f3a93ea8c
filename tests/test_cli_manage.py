"""`truss secrets`, `api-keys`, `models list`, `deployments list`, `logs` against a spec-following server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.spec_server import ADMIN_KEY, SpecServer
from tests.test_cli_push import truss


def test_secrets_are_set_from_stdin_and_never_echoed(tmp_path: Path) -> None:
    with SpecServer() as server:
        assert truss(tmp_path, "remote", "add", "t", server.url, "--api-key", ADMIN_KEY).exit_code == 0
        done = truss(tmp_path, "secrets", "set", "hf_token", input="hunter2\n")
        assert done.exit_code == 0, done.output
        assert "hunter2" not in done.output
        assert server.state.secrets == {"hf_token": "hunter2"}
        listed = truss(tmp_path, "secrets", "list", "-o", "json")
        assert [s["name"] for s in json.loads(listed.stdout)["secrets"]] == ["hf_token"]
        assert truss(tmp_path, "secrets", "delete", "hf_token").exit_code == 0
        again = truss(tmp_path, "secrets", "delete", "hf_token")
        assert again.exit_code == 1 and "no secret 'hf_token'" in again.stderr


def test_api_keys_models_deployments_and_logs(tmp_path: Path) -> None:
    with SpecServer() as server:
        assert truss(tmp_path, "remote", "add", "t", server.url, "--api-key", ADMIN_KEY).exit_code == 0
        created = json.loads(truss(tmp_path, "api-keys", "create", "--scope", "invoke", "--model", "hello", "-o", "json").stdout)
        assert created["key"] and created["models"] == ["hello"]
        listed = truss(tmp_path, "api-keys", "list")
        assert created["prefix"] in listed.stdout and created["key"] not in listed.stdout
        assert truss(tmp_path, "api-keys", "revoke", created["prefix"]).exit_code == 0
        assert created["prefix"] not in truss(tmp_path, "api-keys", "list").stdout
        model = tmp_path / "hello"
        shutil.copytree(EXAMPLES / "hello", model)
        assert truss(tmp_path, "push", str(model), "--wait").exit_code == 0
        assert truss(tmp_path, "models", "list").stdout.splitlines()[1].startswith("hello ")  # under the heading
        deployments = truss(tmp_path, "deployments", "list", "--model", "hello")
        assert "ACTIVE" in deployments.stdout and "production" in deployments.stdout
        missing = truss(tmp_path, "deployments", "list", "--model", "nope")
        assert missing.exit_code == 1 and "(models: hello)" in missing.stderr
        server.state.logs = [{"at": "2024-01-01T00:00:00Z", "source": "build", "text": "installing requirements"}]
        logs = truss(tmp_path, "logs", "--model", "hello", "--since", "10m")
        assert logs.exit_code == 0 and "[build] installing requirements" in logs.stdout
        assert any("since=600" in path for _, path in server.state.requests)
