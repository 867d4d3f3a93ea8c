"""`truss push` as a user runs it, against a real HTTP server that answers per the contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from tests.spec_server import ADMIN_KEY, SpecServer
from truss_cli.cli.app import app

runner = CliRunner()


def truss(home: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"HOME": str(home), "COLUMNS": "200", "TRUSS_CACHE_DIR": str(home / "cache")}, input=input)


def configured(home: Path, server: SpecServer) -> Path:
    assert truss(home, "remote", "add", "test", server.url, "--api-key", ADMIN_KEY).exit_code == 0
    model = home / "hello"
    shutil.copytree(EXAMPLES / "hello", model)
    return model


def test_push_uploads_then_nothing_when_unchanged_and_waits_until_active(tmp_path: Path) -> None:
    with SpecServer() as server:
        model = configured(tmp_path, server)
        first = truss(tmp_path, "push", str(model), "--wait", "--output", "json")
        assert first.exit_code == 0, first.output
        result = json.loads(first.stdout)
        assert result["deployment"]["status"] == "ACTIVE"
        assert result["model"]["name"] == "hello"
        assert "model/model.py" in result["uploaded_files"]
        assert result["predict_url"] == f"{server.url}/model-{result['model']['id']}/production/predict"
        assert len(server.state.uploads) == 1
        second = truss(tmp_path, "push", str(model))
        assert second.exit_code == 0, second.output
        assert "Nothing to upload" in second.stderr
        assert len(server.state.uploads) == 1  # nothing sent again
        (model / "model" / "extra.py").write_text("X = 1\n")
        third = truss(tmp_path, "push", str(model), "--verbose", "-o", "json")
        assert json.loads(third.stdout)["uploaded_files"] == ["model/extra.py"]
        assert "model/extra.py" in third.stderr
        assert server.state.uploads[-1]["members"] == ["manifest.json", "files/model/extra.py"]


def test_a_failed_build_exits_1_with_the_cause(tmp_path: Path) -> None:
    with SpecServer() as server:
        server.state.final_status = "BUILD_FAILED"
        server.state.status_detail = "pip install failed: no package named nosuchpkg"
        model = configured(tmp_path, server)
        pushed = truss(tmp_path, "push", str(model), "--wait")
    assert pushed.exit_code == 1
    assert "BUILD_FAILED: pip install failed: no package named nosuchpkg" in pushed.stderr
    assert "truss logs --model" in pushed.stderr


def test_a_bad_config_fails_before_anything_is_sent(tmp_path: Path) -> None:
    with SpecServer() as server:
        model = configured(tmp_path, server)
        (model / "config.yaml").write_text("model_name: hello\nresources:\n  cpu: many\n")
        pushed = truss(tmp_path, "push", str(model))
        assert pushed.exit_code == 2
        assert "resources.cpu" in pushed.stderr
        assert server.state.requests == []


def test_a_model_without_predict_fails_before_anything_is_sent(tmp_path: Path) -> None:
    with SpecServer() as server:
        model = configured(tmp_path, server)
        (model / "model" / "model.py").write_text("class Model:\n    pass\n")
        pushed = truss(tmp_path, "push", str(model))
        assert pushed.exit_code != 0
        assert "predict" in pushed.stderr
        assert server.state.requests == []


def test_predict_by_model_name_goes_through_the_gateway(tmp_path: Path) -> None:
    with SpecServer() as server:
        model = configured(tmp_path, server)
        pushed = json.loads(truss(tmp_path, "push", str(model), "--wait", "-o", "json").stdout)
        answer = truss(tmp_path, "predict", "--model", "hello", "-d", '{"name": "world"}')
        assert answer.exit_code == 0, answer.output
        assert json.loads(answer.stdout) == {"echo": {"name": "world"}, "deployment_id": pushed["deployment"]["id"]}
        wrong = truss(tmp_path, "predict", "--model", "helo", "-d", "{}")
        assert wrong.exit_code == 1
        assert "no model 'helo' (models: hello)" in wrong.stderr
        wrong_deployment = truss(tmp_path, "predict", "--model", "hello", "--deployment", "nope", "-d", "{}")
        assert f"(deployments: {pushed['deployment']['name']})" in wrong_deployment.stderr
