"""The Docker runtime (truss_cli.controlplane.runtimes.docker) on the real engine: build the
deployment's image, start -> ready -> predict at the handle's URL, secrets only at start,
re-adoption by a new runtime object, stop removes the container and keeps its log."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest

from docker_support import Cleanup, base_image, engine, unique_name
from runtime_support import build_request, runtime_settings, wait_for_phase
from truss_cli.controlplane.runtimes.base import GONE, BuildError, ReplicaSpec
from truss_cli.controlplane.runtimes.docker import DockerRuntime
from truss_cli.server import protocol
from truss_cli.server.status import FAILED, READY

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


def docker_runtime(client: docker.APIClient, data_dir: Path) -> DockerRuntime:
    settings = dataclasses.replace(runtime_settings(data_dir), base_image=base_image(client))
    return DockerRuntime(settings, client)


def test_a_container_replica_serves_is_adopted_and_is_removed_on_stop(client, cleanup, make_model_dir, tmp_path: Path) -> None:
    name = cleanup.model(unique_name("runtime-docker"))
    model_dir = make_model_dir(
        """
        class Model:
            def __init__(self, secrets, **kwargs):
                self._secrets = secrets

            def load(self):
                print("loading the weights")

            def predict(self, model_input):
                return {"echo": model_input, "token": self._secrets["token"]}
        """,
        f"model_name: {name}\nsecrets:\n  token: null\n",
    )
    runtime = docker_runtime(client, tmp_path / "data")
    request = build_request(model_dir)
    artifact = runtime.prepare(request)
    assert artifact.reference == f"truss-{name}:dep-1"
    assert "Step 1/" in request.build_log.read_text()
    spec = ReplicaSpec("dep-1", artifact, secrets={"token": "s3cret-value"})
    handle = runtime.start(spec)
    try:
        assert wait_for_phase(runtime, handle, READY, FAILED, GONE).phase == READY
        answer = httpx.post(handle.url + protocol.PREDICT_PATH, json={"x": 1}, trust_env=False)
        assert answer.json() == {"echo": {"x": 1}, "token": "s3cret-value"}
        assert answer.headers[protocol.REPLICA_ID_HEADER] == spec.replica_id
        # The value is in no image and in nothing `docker inspect` shows.
        assert "s3cret-value" not in str(client.inspect_container(handle.data["container_id"]))
        assert "s3cret-value" not in str(client.inspect_image(artifact.data["image_id"]))

        adopted = docker_runtime(client, tmp_path / "data")
        (found,) = adopted.list()
        assert found == handle
        assert adopted.status(found).phase == READY
        assert docker_runtime(client, tmp_path / "other-data").list() == []  # another control plane's
        assert any(line.text == "loading the weights" for line in adopted.logs(found))

        adopted.stop(found)
        assert adopted.status(found).phase == GONE
        assert adopted.list() == []
        assert client.containers(all=True, filters={"id": handle.data["container_id"]}) == []
        assert any(line.text == "loading the weights" for line in adopted.logs(found))  # kept on stop
    finally:
        runtime.stop(handle)
        runtime.remove_artifact(artifact)
    assert client.images(name=f"truss-{name}") == []


def test_a_broken_requirement_fails_the_build_with_one_line(client, cleanup, make_model_dir, tmp_path: Path) -> None:
    name = cleanup.model(unique_name("runtime-docker-broken"))
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, model_input):\n        return model_input\n",
        f"model_name: {name}\nrequirements:\n  - this-package-does-not-exist-truss-test==1.0\n",
    )
    runtime = docker_runtime(client, tmp_path / "data")
    request = build_request(model_dir)
    with pytest.raises(BuildError) as failure:
        runtime.prepare(request)
    # The log is timestamped: the engine's own text follows the first space.
    cleanup.failed_build("\n".join(line.partition(" ")[2] for line in request.build_log.read_text().splitlines()))
    assert "\n" not in str(failure.value)
    assert "this-package-does-not-exist-truss-test" in request.build_log.read_text()
