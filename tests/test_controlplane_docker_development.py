"""Development deployments on the docker runtime (issue 10): a real control plane process
(`--runtime docker`), a real image, the development replica a container running
`python -m truss_cli.server.control` on a copy of its start tree, patches sent the way the
watcher sends them (real file edits, `IncrementalTree`, `Patch.between`, an envelope).

A code save is hot-swapped (what load() set is kept); a config.yaml environment variable
change restarts the model with the new value; a syntax error answers 422 with its traceback
while the old code serves, and the fixed file recovers; the control API is published on the
host's loopback only and its token is in nothing `docker inspect` or the log shows; a
container killed is replaced by one that serves the patched tree; a patch while scaled to zero is
served by the container the wake starts; after a kill -9 of the control plane the next one
patches the container that ran on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import httpx
import pytest

from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, running_controlplane, start_controlplane
from docker_support import Cleanup, engine, unique_name
from truss_cli.controlplane.runtimes import docker_development
from truss_cli.incremental_tree import IncrementalTree
from truss_cli.sync.envelope import envelope_bytes
from truss_cli.sync.patch import Patch

pytestmark = pytest.mark.docker

# load() draws a token: a hot swap keeps the instance (same token), a restart does not.
MODEL = """
import os
import secrets


class Model:
    def load(self):
        self.token = secrets.token_hex(8)

    def predict(self, request):
        return {{"marker": {marker!r}, "token": self.token, "greeting": os.environ.get("GREETING")}}
"""
CONFIG = "model_name: {name}\npython_version: py311\nenvironment_variables:\n  GREETING: {greeting}\n"


class Watcher:
    """What `truss push --watch` does with a save: update the tree, build the envelope."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = IncrementalTree(root)

    def edit(self, relative: str, text: str) -> tuple[Patch, bytes]:
        (self.root / relative).write_text(text)
        base = self.tree.manifest
        delta = self.tree.update([self.root / relative])
        patch = Patch.between(base, delta)
        blobs = {entry.sha256: self.root / path for path, entry in delta.puts().items()}
        return patch, envelope_bytes(patch.to_dict(), blobs)


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def name(client: docker.APIClient) -> Iterator[str]:
    # Whatever the control plane leaves (it died, a test failed): this model's containers and
    # images, found by the model-name label the runtime puts on both. No one else's.
    cleanup = Cleanup(client)
    yield cleanup.model(unique_name("dev-docker"))
    cleanup.run()


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("docker-dev") / "cp", runtime="docker") as plane:
        yield plane
        plane.client.delete(f"/v1/models/{name}")


@pytest.fixture(scope="module")
def dev(cp: ControlPlaneProcess, name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Watcher]:
    root = model_root(tmp_path_factory.mktemp("tree"), name)
    return push_development(cp, root, name), Watcher(root)


def model_root(parent: Path, name: str) -> Path:
    return write_model_dir(parent / name, MODEL.format(marker="a"), CONFIG.format(name=name, greeting="hello"))


def push_development(cp: ControlPlaneProcess, root: Path, name: str) -> dict[str, Any]:
    created = ok(cp.client.post(f"/v1/models/{name}/deployments", json={"tree_hash": cp.upload(root), "development": True}), 201)
    found = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED", timeout=600)
    assert found["status"] == "ACTIVE", found
    return created


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def send(cp: ControlPlaneProcess, deployment: dict[str, Any], envelope: bytes) -> httpx.Response:
    return cp.client.post(f"/v1/models/{deployment['model_id']}/deployments/development/patches", params={"sync": "true"},
                          content=envelope, headers={"Content-Type": "application/x-tar"}, timeout=300)


def state(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/development/patches/state"))


def predict(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=120))


def containers(client: docker.APIClient, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return client.containers(filters={"label": f"truss.deployment-id={deployment['id']}"})


def test_the_development_replica_is_a_container_whose_control_api_only_this_machine_reaches(
    client: docker.APIClient, cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    assert predict(cp, deployment)["marker"] == "a"
    (container,) = containers(client, deployment)
    inspected = client.inspect_container(container["Id"])
    assert "truss_cli.server.control" in inspected["Config"]["Cmd"]
    bindings = inspected["HostConfig"]["PortBindings"][f"{docker_development.CONTROL_PORT}/tcp"]
    assert [binding["HostIp"] for binding in bindings] == ["127.0.0.1"]
    # The token the control plane holds opens the control API; it is in nothing the engine shows.
    (row,) = [line for line in (cp.data_dir / "replicas").glob("*/control_token")]
    token = row.read_text()
    assert token and token not in json.dumps(inspected)
    assert token.encode() not in client.logs(container["Id"])
    port = int(client.port(container["Id"], docker_development.CONTROL_PORT)[0]["HostPort"])
    control = f"http://127.0.0.1:{port}/control/state"
    assert httpx.get(control, trust_env=False).status_code == 401
    answered = ok(httpx.get(control, headers={"Authorization": f"Bearer {token}"}, trust_env=False))
    # It serves the pushed tree, hashed as the watcher hashes it: patches build on it.
    assert answered["tree_hash"] == watcher.tree.tree_hash()


def test_a_code_save_is_hot_swapped_keeping_what_load_set(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    before = predict(cp, deployment)
    patch, envelope = watcher.edit("model/model.py", MODEL.format(marker="b"))
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "hot_swap", answer
    assert answer["tree_hash"] == patch.next_hash
    assert predict(cp, deployment) == {**before, "marker": "b"}


def test_an_environment_variable_change_restarts_with_the_new_value(cp: ControlPlaneProcess, dev: Any, name: str) -> None:
    deployment, watcher = dev
    before = predict(cp, deployment)
    answer = ok(send(cp, deployment, watcher.edit("config.yaml", CONFIG.format(name=name, greeting="bonjour"))[1]))
    assert answer["action"] == "restart", answer
    after = predict(cp, deployment)
    assert after["greeting"] == "bonjour" and after["token"] != before["token"]


def test_a_syntax_error_answers_422_while_the_old_code_serves_and_the_fix_recovers(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    before = predict(cp, deployment)
    failed = send(cp, deployment, watcher.edit("model/model.py", MODEL.format(marker="c") + "\ndef broken(:\n")[1])
    assert failed.status_code == 422, failed.text
    body = failed.json()
    assert body["error_code"] == "PATCH_FAILED" and body["detail"]["phase"] == "syntax"
    assert "model/model.py" in body["detail"]["traceback"] and "broken(" in body["detail"]["traceback"]
    assert predict(cp, deployment) == before
    answer = ok(send(cp, deployment, watcher.edit("model/model.py", MODEL.format(marker="d"))[1]))
    assert answer["action"] in ("hot_swap", "restart"), answer
    assert predict(cp, deployment)["marker"] == "d"


def test_a_container_killed_is_replaced_by_one_serving_the_patched_tree(
    client: docker.APIClient, cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    (old,) = containers(client, deployment)
    client.kill(old["Id"])
    deadline = time.monotonic() + 300
    while True:
        running = [c for c in containers(client, deployment) if c["Id"] != old["Id"]]
        if running:
            answer = cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=120)
            if answer.status_code == 200:
                break
        assert time.monotonic() < deadline, f"no new replica served within 300 s\n{cp.log()[-3000:]}"
        time.sleep(0.5)
    served = answer.json()
    assert served["marker"] == "d" and served["greeting"] == "bonjour"  # the patched code and config.yaml
    assert state(cp, deployment) == {"running_patch_point": {"hash": watcher.tree.tree_hash()}, "pending_patch_point": None,
                                     "rebuild": None}
    # And it takes patches as the first one did.
    answer = ok(send(cp, deployment, watcher.edit("model/model.py", MODEL.format(marker="e"))[1]))
    assert answer["action"] == "hot_swap", answer
    assert predict(cp, deployment)["marker"] == "e"


def test_a_patch_while_scaled_to_zero_is_served_by_the_woken_container_which_a_restarted_control_plane_patches(
    client: docker.APIClient, tmp_path: Path
) -> None:
    cleanup = Cleanup(client)
    name = cleanup.model(unique_name("dev-docker-sleepy"))
    first = start_controlplane(tmp_path / "cp", runtime="docker", extra_args=("--dev-idle-seconds", "2"))
    second = None
    try:
        root = model_root(tmp_path, name)
        deployment, watcher = push_development(first, root, name), Watcher(root)
        first.wait_for_status(deployment["model_id"], deployment["id"], "SCALED_TO_ZERO", timeout=300)
        deadline = time.monotonic() + 120
        while containers(client, deployment):  # stopped gracefully once routing says asleep
            assert time.monotonic() < deadline, "the scaled-down container still runs"
            time.sleep(0.2)
        patch, envelope = watcher.edit("model/model.py", MODEL.format(marker="while-asleep"))
        assert ok(send(first, deployment, envelope))["action"] == "deferred"
        before = predict(first, deployment)  # the wake starts a container at the staged tree
        assert before["marker"] == "while-asleep"
        # The container reports the staged tree (its status carries the tree hash): it runs now.
        deadline = time.monotonic() + 60
        while (found := state(first, deployment)) != {"running_patch_point": {"hash": patch.next_hash},
                                                     "pending_patch_point": None, "rebuild": None}:
            assert time.monotonic() < deadline, found
            time.sleep(0.1)

        (container,) = containers(client, deployment)
        first.kill()
        # The handle the store kept names the control API's published port and token file.
        second = start_controlplane(tmp_path / "cp", runtime="docker", admin_key=first.admin_key,
                                    extra_args=("--dev-idle-seconds", "600"))
        answer = ok(send(second, deployment, watcher.edit("model/model.py", MODEL.format(marker="after-kill"))[1]))
        assert answer["action"] == "hot_swap", answer
        assert predict(second, deployment) == {**before, "marker": "after-kill"}
        assert [c["Id"] for c in containers(client, deployment)] == [container["Id"]]  # not replaced
    finally:
        first.close()
        if second is not None:
            second.client.delete(f"/v1/models/{name}")
            second.close()
            second.terminate()
        cleanup.run()
