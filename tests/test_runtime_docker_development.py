"""The Docker runtime's development replicas on the real engine (runtimes/docker_development):
the start tree copied into the container (modes kept, so it hashes as the control plane's
tree), secrets beside it, the control API's URL and token file in the Handle, found again by
a new runtime object (a control-plane restart), and the token file gone on stop."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest

from docker_support import Cleanup, base_image, engine, unique_name
from runtime_support import build_request, runtime_settings, wait_for_phase
from truss_cli.controlplane.runtimes.base import CONTROL_TOKEN_FILE, CONTROL_URL, GONE, ReplicaSpec, control_token
from truss_cli.controlplane.runtimes.docker import DockerRuntime
from truss_cli.server import protocol
from truss_cli.server.control.apply import scan_tree
from truss_cli.server.status import FAILED, READY

pytestmark = pytest.mark.docker

MODEL = """
import os
from pathlib import Path


class Model:
    def __init__(self, secrets, **kwargs):
        self._secrets = secrets

    def predict(self, model_input):
        return {
            "data": Path("data/words.txt").read_text(),  # relative: the tree is the working directory
            "secret": self._secrets["token"],
            "greeting": os.environ.get("GREETING"),
        }
"""


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


def test_a_development_container_serves_its_tree_and_is_found_again_with_its_control_api(
    client, cleanup, make_model_dir, tmp_path: Path
) -> None:
    name = cleanup.model(unique_name("runtime-docker-dev"))
    model_dir = make_model_dir(MODEL, f"model_name: {name}\nsecrets:\n  token: null\n", {"data/words.txt": "built"})
    settings = dataclasses.replace(runtime_settings(tmp_path / "data"), base_image=base_image(client))
    runtime = DockerRuntime(settings, client)
    artifact = runtime.prepare(build_request(model_dir))
    # The start tree differs from the built one (a patch point): the container must serve it.
    tree = tmp_path / "tree"
    shutil.copytree(model_dir, tree)
    (tree / "data" / "words.txt").write_text("patched")
    (tree / "config.yaml").write_text(f"model_name: {name}\nsecrets:\n  token: null\nenvironment_variables:\n  GREETING: hi\n")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tree / "run.sh", 0o755)  # a mode the tree hash counts
    tree_hash = scan_tree(tree).tree_hash()
    spec = ReplicaSpec("dep-1", artifact, secrets={"token": "s3cret"}, development=True, tree_dir=str(tree), tree_hash=tree_hash)
    handle = runtime.start(spec)
    try:
        observed = wait_for_phase(runtime, handle, READY, FAILED, GONE)
        assert observed.phase == READY and observed.tree_hash == tree_hash
        answer = httpx.post(handle.url + protocol.PREDICT_PATH, json={}, trust_env=False)
        assert answer.json() == {"data": "patched", "secret": "s3cret", "greeting": "hi"}

        token = control_token(handle)
        assert token and Path(handle.data[CONTROL_TOKEN_FILE]).stat().st_mode & 0o777 == 0o600
        state = httpx.get(handle.data[CONTROL_URL] + protocol.CONTROL_STATE_PATH, trust_env=False,
                          headers={"Authorization": f"Bearer {token}"}).json()
        assert state["tree_hash"] == tree_hash
        assert token not in str(client.inspect_container(handle.data["container_id"]))

        adopted = DockerRuntime(settings, client)
        (found,) = adopted.list()
        assert found == handle  # the control API's URL and token file too
        adopted.stop(found)
        assert adopted.status(found).phase == GONE
        assert not Path(handle.data[CONTROL_TOKEN_FILE]).exists()
    finally:
        runtime.stop(handle)
        runtime.remove_artifact(artifact)
