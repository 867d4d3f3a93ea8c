"""`truss run` of a custom server (`docker_server`): a real `truss run` process, a real
environment, the custom server behind the replica."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from conftest import EXAMPLES, REPO_ROOT
from custom_server_support import APP, reserve_port  # noqa: F401 (fixture)
from run_helpers import TrussRun, port_is_free, shared_cache
from truss_cli.server.protocol import PREDICT_PATH, READINESS_PATH


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_cache(tmp_path_factory)


def example_on_a_free_port(tmp_path: Path, port: int) -> tuple[Path, int]:
    """examples/custom-server, its server moved to `port` (reserved: no other test gets it)."""
    model_dir = tmp_path / "custom-server"
    shutil.copytree(EXAMPLES / "custom-server", model_dir)
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("8000", str(port)))
    return model_dir, port


def app_model_dir(tmp_path: Path, port: int, extra: str = "", command: str = "") -> Path:
    """A model directory whose custom server is the tests' app (no model.py at all)."""
    model_dir = tmp_path / "app-model"
    (model_dir / "model").mkdir(parents=True)
    shutil.copy(APP, model_dir / "model" / "app.py")
    (model_dir / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            model_name: app
            docker_server:
              start_command: {command or f"python model/app.py {port}"}
              server_port: {port}
              predict_endpoint: /predict
              readiness_endpoint: /ready
              liveness_endpoint: /alive
            """
        )
        + textwrap.dedent(extra)
    )
    return model_dir


def test_run_serves_the_example_custom_server_until_ctrl_c(cache: Path, tmp_path: Path, reserve_port) -> None:
    model_dir, server_port = example_on_a_free_port(tmp_path, reserve_port())
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        url = run.wait_for_url()
        assert run.predict({"name": "Ada"}).json() == {"greeting": "Hello, Ada!"}
        with httpx.stream("POST", url + PREDICT_PATH, json={"name": "Ada", "stream": True}, timeout=30) as response:
            lines = [line for line in response.iter_lines()]
        assert lines == ["Hello", "Ada", "from", "a", "custom", "server"]
        assert httpx.get(url + READINESS_PATH).json() == {"status": "ok"}
        predicted = subprocess.run(
            [sys.executable, "-m", "truss_cli", "predict", "--url", url, "-d", '{"name": "Grace"}'],
            capture_output=True, text=True, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, timeout=60,
        )
        assert predicted.returncode == 0, predicted.stderr
        assert "Hello, Grace!" in predicted.stdout
        assert "custom server: listening on port" in run.stderr  # its log reaches ours
        assert run.stop() == 130
    finally:
        run.kill()
    assert port_is_free(run.port) and port_is_free(server_port)


def test_config_variables_reach_the_custom_server(cache: Path, tmp_path: Path, reserve_port) -> None:
    port = reserve_port()
    model_dir = app_model_dir(
        tmp_path, port,
        """\
        environment_variables:
          READY_AT_ONCE: "1"
          ECHO_ENV: MY_SETTING
          MY_SETTING: from-config
        """,
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        run.wait_for_url()
        assert run.predict({}).json()["env"] == "from-config"
    finally:
        run.stop()


def test_secrets_reach_the_custom_server_as_files_only(cache: Path, tmp_path: Path, reserve_port) -> None:
    # As Truss gives them (/secrets/<name>); `truss run` writes them into a private directory
    # named by TRUSS_SECRETS_DIR instead, since a process cannot own /secrets.
    port = reserve_port()
    model_dir = app_model_dir(
        tmp_path, port,
        """\
        environment_variables:
          READY_AT_ONCE: "1"
          ECHO_ENV: API_KEY
        secrets:
          api_key: from-config
          hf_access_token: null
        """,
        # Read in the start command, as Truss's docs show it (`$(cat /secrets/hf_access_token)`).
        command=f"API_KEY=$(cat $TRUSS_SECRETS_DIR/api_key) python model/app.py {port}",
    )
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    try:
        url = run.wait_for_url()
        assert run.predict({}).json()["env"] == "from-config"
        seen = httpx.get(url + "/secrets").json()
        assert seen["files"] == {"api_key": {"value": "from-config", "mode": "0o600"}}
        assert seen["directory_mode"] == "0o700" and seen["secret_variables"] == []
        directory = Path(seen["directory"])
    finally:
        run.stop()
    assert not directory.exists()
    assert "secret 'hf_access_token' has no value" in run.stderr
    override = TrussRun(
        model_dir, cache, tmp_path / "logs",
        env={"TRUSS_SECRET_api_key": "from-caller", "TRUSS_SECRET_hf_access_token": "hf_caller"},
    )
    try:
        url = override.wait_for_url()
        files = httpx.get(url + "/secrets").json()["files"]
        assert {name: file["value"] for name, file in files.items()} == {"api_key": "from-caller", "hf_access_token": "hf_caller"}
    finally:
        override.stop()
    assert "from-caller" not in override.stderr and "hf_caller" not in override.stderr


def test_a_custom_server_that_exits_fails_the_run_with_its_last_line(cache: Path, tmp_path: Path, reserve_port) -> None:
    model_dir = app_model_dir(tmp_path, reserve_port(), command="echo 'loading weights'; echo 'no weights in /weights' >&2; exit 3")
    run = TrussRun(model_dir, cache, tmp_path / "logs")
    assert run.wait_exit() == 1
    assert "the custom server exited with code 3: no weights in /weights" in run.stderr
    assert "loading weights" in run.stderr


def test_no_build_without_a_start_command_is_refused_before_building(tmp_path: Path, reserve_port) -> None:
    model_dir = app_model_dir(tmp_path, reserve_port())
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("  start_command:", "  no_build: true\n  # start_command:"))
    run = TrussRun(model_dir, tmp_path / "cache", tmp_path / "logs")
    assert run.wait_exit() == 2
    assert "docker_server.start_command: required by truss-cli, also with no_build" in run.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("bin/python"))


def test_a_secret_name_that_cannot_be_a_file_is_refused_before_building(tmp_path: Path, reserve_port) -> None:
    model_dir = app_model_dir(tmp_path, reserve_port(), 'secrets:\n  "hf/token": null\n')
    run = TrussRun(model_dir, tmp_path / "cache", tmp_path / "logs")
    assert run.wait_exit() == 2
    assert "config.yaml: secrets: 'hf/token': not usable as a file name" in run.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("bin/python"))
