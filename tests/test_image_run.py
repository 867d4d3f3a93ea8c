"""`truss image run` as a user runs it: build if needed, serve on 127.0.0.1, predict with
`truss predict`, and Ctrl-C stops and removes the container."""

from __future__ import annotations

import json
import os
import re
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

from conftest import EXAMPLES, REPO_ROOT
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


def image_run_env() -> dict[str, str]:
    # The worktree's code, also in the subprocess (the installed package may be another copy).
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, TRUSS_BASE_IMAGE=base_image(engine()), PYTHONPATH=pythonpath)


def wait_for_url(log: Path, process: subprocess.Popen, timeout: float = 600) -> str:
    """The URL `truss image run` prints on stdout once the model is ready."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(r"^(http://127\.0\.0\.1:\d+)$", log.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found.group(1)
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)


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
    before = {container["Id"] for container in containers_of(client, "text-classifier")}
    log = tmp_path / "image-run.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "truss_cli", "image", "run", str(EXAMPLES / "text-classifier"), "--tag", tag,
             "--port", "0"],
            cwd=REPO_ROOT,
            env=image_run_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_for_url(log, process)  # the engine picked the port
        ours = [c for c in containers_of(client, "text-classifier") if c["Id"] not in before and c["Image"] == tag]
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
        # Only this run's container (its image tag): another suite on the same engine may be
        # running the same example right now.
        for container in containers_of(client, "text-classifier"):
            if container["Id"] not in before and container["Image"] == tag:
                client.remove_container(container["Id"], force=True)
    output = log.read_text(errors="replace")
    assert process.returncode == 130, output  # as a shell reports a command ended by Ctrl-C
    assert "Removed" in output
    assert [c for c in containers_of(client, "text-classifier") if c["Id"] not in before and c["Image"] == tag] == []


def test_a_port_in_use_is_reported_before_building(client: docker.APIClient, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["image", "run", str(EXAMPLES / "hello"), "--port", str(port)])
    assert result.exit_code == 1
    assert f"Error: port {port} on 127.0.0.1 is already in use\n" in result.stderr
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


def start_image_run(model_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "truss_cli", "image", "run", str(model_dir), "--port", "0", *extra],
            cwd=REPO_ROOT,
            env=image_run_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def test_sigterm_while_the_model_loads_removes_the_container(
    client: docker.APIClient, cleanup: Cleanup, make_model_dir, tmp_path: Path
) -> None:
    name = cleanup.model(unique_name("truss-test-slow-load"))
    model_dir = make_model_dir(SLOW_LOADING_MODEL, f"model_name: {name}\n")
    log = tmp_path / "image-run.log"
    process = start_image_run(model_dir, log)
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
        result = runner.invoke(app, ["image", "run", str(model_dir), "--port", "0", "--detach", "-o", "json", *extra])
        assert result.exit_code == 0, result.output
        container = json.loads(result.stdout)["container"]
        try:
            return client.inspect_container(container)["HostConfig"]
        finally:
            client.remove_container(container, force=True)

    limited = host_config_of_a_detached_run()
    assert (limited["NanoCpus"], limited["Memory"]) == (500_000_000, 512 * 2**20)
    unlimited = host_config_of_a_detached_run("--no-limits")
    assert (unlimited["NanoCpus"], unlimited["Memory"]) == (0, 0)


FAILING_LOAD_MODEL = """
class Model:
    def load(self):
        raise RuntimeError("weights are missing")

    def predict(self, model_input):
        return model_input
"""


def test_a_failed_load_exits_1_with_the_servers_summary_and_removes_the_container(
    client: docker.APIClient, cleanup: Cleanup, make_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-failing-load"))
    model_dir = make_model_dir(FAILING_LOAD_MODEL, f"model_name: {name}\n")
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base_image(client))
    result = runner.invoke(app, ["image", "run", str(model_dir), "--port", "0"])
    assert result.exit_code == 1, result.output
    # The model's traceback, from the server's status, then one line with the cause.
    assert 'raise RuntimeError("weights are missing")' in result.stderr
    (final,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert final.startswith(
        "Error: the model server reports a failed load before it was ready: load failed: RuntimeError: weights are missing"
    ), result.stderr
    assert containers_of(client, name) == []


def test_a_second_run_on_a_port_in_use_fails_before_building(
    client: docker.APIClient, cleanup: Cleanup, make_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-same-port"))
    model_dir = make_model_dir(QUICK_MODEL, f"model_name: {name}\n")
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base_image(client))
    first = runner.invoke(app, ["image", "run", str(model_dir), "--port", "0", "--detach", "-o", "json"])
    assert first.exit_code == 0, first.output
    started = json.loads(first.stdout)
    try:
        port = int(started["url"].rsplit(":", 1)[1])
        second = runner.invoke(app, ["image", "run", str(model_dir), "--port", str(port)])
        assert second.exit_code == 1, second.output
        assert f"Error: port {port} on 127.0.0.1 is already in use\n" in second.stderr
        assert second.stdout == ""  # no URL: nothing of the second run answers there
        assert [c["Names"] for c in containers_of(client, name)] == [[f"/{started['container']}"]]
    finally:
        client.remove_container(started["container"], force=True)
