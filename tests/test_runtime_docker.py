"""The Docker runtime (truss_cli.controlplane.runtimes.docker) on the real engine: build the
deployment's image, start -> ready -> predict at the handle's URL, secrets only at start (as
files: for a model server and for a custom server, as its own user, never in the container's
environment), re-adoption by a new runtime object, stop removes the container and keeps its log."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest

from custom_server_support import APP
from docker_support import Cleanup, base_image, engine, unique_name
from runtime_support import build_request, runtime_settings, wait_for_phase
from truss_cli.controlplane.runtimes.base import GONE, BuildError, ReplicaSpec
from truss_cli.controlplane.runtimes.container_user import container_user
from truss_cli.controlplane.runtimes.docker import DockerRuntime
from truss_cli.errors import TrussError
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


def test_a_base_image_the_engine_cannot_get_fails_the_build_saying_how_to_give_the_control_plane_one(
    client, make_model_dir, tmp_path: Path
) -> None:
    model_dir = make_model_dir("class Model:\n    def predict(self, model_input):\n        return model_input\n",
                               f"model_name: {unique_name('runtime-docker-nobase')}\n")
    settings = dataclasses.replace(runtime_settings(tmp_path / "data"), base_image="truss-test-no-such-base:never")
    request = build_request(model_dir)
    with pytest.raises(BuildError, match="Base image truss-test-no-such-base:never not found"):
        DockerRuntime(settings, client).prepare(request)
    log = request.build_log.read_text()
    assert "TRUSS_BASE_IMAGE=IMAGE truss server start" in log and "--runtime process" in log, log


API_KEY = "sk-test-4f1c9e"  # a stand-in value, distinctive enough to search for


def test_a_custom_server_gets_its_secrets_as_files_of_its_own_user_and_none_in_its_environment(
    client, cleanup, tmp_path: Path
) -> None:
    # no_build: the base image plus the replica, the cheapest custom server image to build.
    name = cleanup.model(unique_name("runtime-docker-custom"))
    model_dir = tmp_path / name
    (model_dir / "data").mkdir(parents=True)
    shutil.copy(APP, model_dir / "data" / "app.py")
    (model_dir / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            model_name: {name}
            base_image:
              image: {base_image(client)}
            docker_server:
              no_build: true
              run_as_user_id: 1234
              start_command: python3 /app/data/app.py 8000
              server_port: 8000
              predict_endpoint: /predict
              readiness_endpoint: /ready
              liveness_endpoint: /alive
            environment_variables:
              READY_AT_ONCE: "1"
            secrets:
              api_key: null
            """
        )
    )
    runtime = docker_runtime(client, tmp_path / "data")
    artifact = runtime.prepare(build_request(model_dir))
    handle = runtime.start(ReplicaSpec("dep-1", artifact, secrets={"api_key": API_KEY}))
    try:
        assert wait_for_phase(runtime, handle, READY, FAILED, GONE).phase == READY
        seen = httpx.get(handle.url + "/secrets", trust_env=False, timeout=30).json()
        assert seen["directory"] == "/secrets"  # where Truss puts them
        # Readable by the custom server (uid 1234, run_as_user_id), by no one else.
        assert seen["files"] == {"api_key": {"value": API_KEY, "mode": "0o600"}}
        assert seen["directory_mode"] == "0o700"
        assert seen["secret_variables"] == []
        assert httpx.post(handle.url + protocol.PREDICT_PATH, json={}, trust_env=False).json()["uid"] == 1234

        container_id = handle.data["container_id"]
        inspected = client.inspect_container(container_id)
        assert not [entry for entry in inspected["Config"]["Env"] if entry.startswith(protocol.SECRET_ENV_PREFIX)]
        assert API_KEY not in str(inspected)
        assert API_KEY not in str([client.inspect_image(artifact.data["image_id"]), client.history(artifact.data["image_id"])])
        # Every process in the container (init, the replica, the custom server): no value, no variable.
        each_process = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; tr '\\0' ' ' < $p/environ; echo; done"
        listing = client.exec_create(container_id, ["sh", "-c", each_process], user="0")
        environs = client.exec_start(listing).decode("utf-8", "replace")
        assert "truss_cli.server.custom" in environs and "/app/data/app.py" in environs
        assert protocol.SECRET_ENV_PREFIX not in environs and API_KEY not in environs
        assert protocol.SECRETS_DIR_ENV + "=/secrets" in environs
        assert all(API_KEY not in line.text for line in runtime.logs(handle))
    finally:
        runtime.stop(handle)
        runtime.remove_artifact(artifact)


def test_the_user_a_container_runs_as_is_resolved_in_its_own_user_database(client, tmp_path: Path) -> None:
    created = []

    def user_of(user: str) -> tuple[int, int]:
        container = client.create_container(base_image(client), command=["true"], user=user)["Id"]
        created.append(container)
        return container_user(client, container)

    try:
        assert user_of("") == (0, 0)
        assert user_of("10001:10001") == (10001, 10001)
        assert user_of("1234") == (1234, 0)  # not in /etc/passwd: group 0, as the engine runs it
        assert user_of("nobody") == (65534, 65534)
        assert user_of("daemon:nogroup") == (1, 65534)
        with pytest.raises(TrussError, match="the image runs as user 'no-such-user', which its /etc/passwd does not list"):
            user_of("no-such-user")
    finally:
        for container in created:
            client.remove_container(container, force=True)
