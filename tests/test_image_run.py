"""`truss image run` as a user runs it: build if needed, serve on 127.0.0.1, predict with
`truss predict`, and Ctrl-C stops and removes the container."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import docker
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO_ROOT, free_port, wait_until_ready
from docker_support import Cleanup, base_image, engine, unique_name
from truss_cli.cli.app import app

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


def containers_of(client: docker.APIClient, model_name: str) -> list[dict]:
    return client.containers(all=True, filters={"label": f"truss.model-name={model_name}"})


def wait_for_output(log: Path, text: str, timeout: float = 60) -> None:
    """Wait until the command has printed `text` (its output goes to `log`)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not printed within {timeout}s:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def test_run_text_classifier_predict_then_ctrl_c_removes_the_container(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path
) -> None:
    tag = cleanup.tag(f"truss-test-text-classifier:{uuid.uuid4().hex[:8]}")
    port = free_port()
    before = {container["Id"] for container in containers_of(client, "text-classifier")}
    env = dict(os.environ, TRUSS_BASE_IMAGE=base_image(client))
    log = tmp_path / "image-run.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "truss_cli", "image", "run", str(EXAMPLES / "text-classifier"), "--tag", tag,
             "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/v1/models/model", timeout=600, is_alive=lambda: process.poll() is None)
        ours = [c for c in containers_of(client, "text-classifier") if c["Id"] not in before]
        assert len(ours) == 1 and ours[0]["State"] == "running"

        result = runner.invoke(app, ["predict", "--url", url, "-d", json.dumps({"text": "I loved it, wonderful service"})])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["label"] == "positive"

        # The model server's own log is streamed once the command reports ready.
        wait_for_output(log, "Running load()")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for container in containers_of(client, "text-classifier"):
            if container["Id"] not in before:
                client.remove_container(container["Id"], force=True)
    output = log.read_text(errors="replace")
    assert process.returncode == 0, output
    assert url in output
    assert "Removed" in output
    assert [c for c in containers_of(client, "text-classifier") if c["Id"] not in before] == []


def test_a_port_in_use_is_reported_before_building(client: docker.APIClient, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["image", "run", str(EXAMPLES / "hello"), "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.output
    assert "Step " not in result.output


SLOW_LOADING_MODEL = """
import time


class Model:
    def load(self):
        time.sleep(600)  # weights that take minutes to download

    def predict(self, model_input):
        return model_input
"""

QUICK_MODEL = """
class Model:
    def predict(self, model_input):
        return model_input
"""


def start_image_run(model_dir: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, TRUSS_BASE_IMAGE=base_image(engine()))
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "truss_cli", "image", "run", str(model_dir), "--port", str(port), *extra],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def test_sigterm_while_the_model_loads_removes_the_container(
    client: docker.APIClient, cleanup: Cleanup, make_model_dir, tmp_path: Path
) -> None:
    name = cleanup.model(unique_name("truss-test-slow-load"))
    model_dir = make_model_dir(SLOW_LOADING_MODEL, f"model_name: {name}\n")
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, free_port(), log)
    try:
        deadline = time.monotonic() + 600
        while not any(c["State"] == "running" for c in containers_of(client, name)):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        # load() has started inside the container: truss is waiting for readiness.
        (container,) = containers_of(client, name)
        while b"Running load()" not in client.logs(container["Id"]):
            assert time.monotonic() < deadline, client.logs(container["Id"])
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert containers_of(client, name) == [], output
    assert process.returncode == 130, output
    assert "Removed" in output


def test_config_resources_limit_the_container_unless_no_limits(
    client: docker.APIClient, cleanup: Cleanup, make_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-limits"))
    model_dir = make_model_dir(QUICK_MODEL, f"model_name: {name}\nresources:\n  cpu: 500m\n  memory: 512Mi\n")
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base_image(client))

    def host_config_of_a_detached_run(*extra: str) -> dict:
        port = free_port()
        result = runner.invoke(app, ["image", "run", str(model_dir), "--port", str(port), "--detach", *extra])
        assert result.exit_code == 0, result.output
        (container,) = [c for c in containers_of(client, name) if str(port) in str(c["Ports"])]
        try:
            return client.inspect_container(container["Id"])["HostConfig"]
        finally:
            client.remove_container(container["Id"], force=True)

    limited = host_config_of_a_detached_run()
    assert (limited["NanoCpus"], limited["Memory"]) == (500_000_000, 512 * 2**20)
    unlimited = host_config_of_a_detached_run("--no-limits")
    assert (unlimited["NanoCpus"], unlimited["Memory"]) == (0, 0)
