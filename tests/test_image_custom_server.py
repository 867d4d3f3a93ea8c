"""Images of custom servers (`docker_server`) on the real engine: the image runs the replica
that starts the custom server; `no_build` is the base image as it is plus that replica."""

from __future__ import annotations

import json
import shutil
import signal
import textwrap
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from custom_server_support import APP
from docker_support import Cleanup, base_image, engine, unique_name
from test_image_run import containers_of, start_image_run, wait_for_output, wait_for_url
from truss_cli.cli.app import app
from truss_cli.server.protocol import PREDICT_PATH

pytestmark = pytest.mark.docker
runner = CliRunner()


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


def no_build_dir(tmp_path: Path, name: str, image: str, start_command: str, extra: str = "") -> Path:
    """A no_build model directory: the tests' app in data/, nothing else."""
    model_dir = tmp_path / name
    (model_dir / "data").mkdir(parents=True)
    shutil.copy(APP, model_dir / "data" / "app.py")
    (model_dir / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            model_name: {name}
            base_image:
              image: {image}
            docker_server:
              no_build: true
              start_command: {json.dumps(start_command)}
              server_port: 8000
              predict_endpoint: /predict
              readiness_endpoint: /ready
              liveness_endpoint: /alive
            """
        )
        + textwrap.dedent(extra)
    )
    return model_dir


def built_dir(tmp_path: Path, name: str, extra: str = "") -> Path:
    """A model directory whose image is built (not no_build): the tests' app as model/app.py."""
    model_dir = tmp_path / name
    (model_dir / "model").mkdir(parents=True)
    shutil.copy(APP, model_dir / "model" / "app.py")
    (model_dir / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            model_name: {name}
            docker_server:
              start_command: python model/app.py 8000
              server_port: 8000
              predict_endpoint: /predict
              readiness_endpoint: /ready
              liveness_endpoint: /alive
            environment_variables:
              READY_AT_ONCE: "1"
            """
        )
        + textwrap.dedent(extra)
    )
    return model_dir


def secrets_seen(url: str) -> dict:
    return httpx.get(url + "/secrets", timeout=30).json()


def image_text(client: docker.APIClient, model_name: str) -> str:
    """Everything the engine keeps about the model's image: its config, labels and history."""
    (image,) = {container["ImageID"] for container in containers_of(client, model_name)}
    return json.dumps([client.inspect_image(image), client.history(image)])


def test_the_example_image_serves_predictions_and_streams(client: docker.APIClient, cleanup: Cleanup, tmp_path: Path) -> None:
    name = cleanup.model(unique_name("truss-test-custom-server"))
    model_dir = tmp_path / "custom-server"
    shutil.copytree(EXAMPLES / "custom-server", model_dir)
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("model_name: custom-server", f"model_name: {name}"))
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, log)
    try:
        url = wait_for_url(log, process)
        result = runner.invoke(app, ["predict", "--url", url, "-d", '{"name": "Ada"}'])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"greeting": "Hello, Ada!"}
        with httpx.stream("POST", url + PREDICT_PATH, json={"name": "Ada", "stream": True}, timeout=30) as response:
            assert list(response.iter_lines()) == ["Hello", "Ada", "from", "a", "custom", "server"]
        wait_for_output(log, "custom server: listening on port 8000")  # its log reaches ours
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log.read_text(errors="replace")
    assert containers_of(client, name) == []


def test_no_build_runs_the_base_image_as_it_is_with_the_replica_in_front(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.model(unique_name("truss-test-no-build"))
    model_dir = no_build_dir(
        tmp_path, name, base_image(client), "python3 /app/data/app.py 8000",
        """\
        requirements:
          - no-such-package-for-truss-cli-tests==0.0.1
        environment_variables:
          READY_AT_ONCE: "1"
        """,
    )
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("  no_build: true\n", "  no_build: true\n  run_as_user_id: 1234\n"))
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, log)
    try:
        url = wait_for_url(log, process)
        answer = httpx.post(url + PREDICT_PATH + "?q=1", json={"x": 1}, timeout=30).json()
        assert answer["path"] == "/predict?q=1" and json.loads(answer["body"]) == {"x": 1}
        assert answer["uid"] == 1234  # run_as_user_id
        # The requirement would have failed the build: no_build installs nothing, and says so.
        assert "requirements is ignored" in log.read_text(errors="replace")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log.read_text(errors="replace")


def test_a_custom_server_that_exits_in_a_container_fails_with_its_last_line(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-custom-exit"))
    model_dir = no_build_dir(tmp_path, name, base_image(client), "echo 'cuda: no device found' >&2; exit 3")
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base_image(client))
    result = runner.invoke(app, ["image", "run", str(model_dir), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "the custom server exited with code 3: cuda: no device found" in result.stderr
    assert containers_of(client, name) == []


API_KEY = "sk-test-4f1c9e"
HF_TOKEN = "hf-test-from-a-mounted-dir"


def test_a_built_custom_server_reads_its_secrets_from_slash_secrets_as_in_truss(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-custom-secrets"))
    model_dir = built_dir(tmp_path, name, "secrets:\n  api_key: null\n  hf_access_token: null\n  not_given: null\n")
    mounted = tmp_path / "secrets-dir"
    mounted.mkdir(mode=0o755)
    (mounted / "hf_access_token").write_text(HF_TOKEN)
    (mounted / "hf_access_token").chmod(0o644)  # readable by the container's user
    monkeypatch.setenv("TRUSS_SECRET_api_key", API_KEY)
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, log, "--secrets-dir", str(mounted))
    try:
        url = wait_for_url(log, process)
        seen = secrets_seen(url)
        assert seen["directory"] == "/secrets"
        assert seen["files"] == {
            "api_key": {"value": API_KEY, "mode": "0o600"},
            "hf_access_token": {"value": HF_TOKEN, "mode": "0o600"},
        }
        assert seen["directory_mode"] == "0o700"
        assert seen["secret_variables"] == []
        assert API_KEY not in image_text(client, name) and HF_TOKEN not in image_text(client, name)
        output = log.read_text(errors="replace")
        assert "secret 'not_given' has no value" in output
        assert API_KEY not in output and HF_TOKEN not in output
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log.read_text(errors="replace")


def test_a_no_build_custom_server_gets_slash_secrets_as_its_own_user(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-no-build-secrets"))
    model_dir = no_build_dir(
        tmp_path, name, base_image(client), "python3 /app/data/app.py 8000",
        """\
        environment_variables:
          READY_AT_ONCE: "1"
        secrets:
          api_key: null
        """,
    )
    config = model_dir / "config.yaml"
    config.write_text(config.read_text().replace("  no_build: true\n", "  no_build: true\n  run_as_user_id: 1234\n"))
    monkeypatch.setenv("TRUSS_SECRET_api_key", API_KEY)
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, log)
    try:
        url = wait_for_url(log, process)
        seen = secrets_seen(url)
        assert seen["files"] == {"api_key": {"value": API_KEY, "mode": "0o600"}}
        assert seen["directory"] == "/secrets" and seen["directory_mode"] == "0o700"
        assert seen["secret_variables"] == []
        assert httpx.post(url + PREDICT_PATH, json={}, timeout=30).json()["uid"] == 1234
        assert API_KEY not in image_text(client, name)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log.read_text(errors="replace")
