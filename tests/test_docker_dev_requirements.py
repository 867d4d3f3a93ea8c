"""Requirements and system_packages of a development deployment on the docker runtime are
installed inside the serving container, not by a rebuild (issue 10; docs/live-reload.md,
"Task K"): a real control plane (`--runtime docker`), a real image, patches sent the way the
watcher sends them.

A requirement added is installed in a new environment beside the image's and the model
imports it; removed, the model no longer finds it; a system package added is installed with
apt and the model runs it; an install that fails answers 422 with the installer's output
while the old code serves; a container killed afterwards comes back with the patched
packages (it replays the installs at start). The container is the same one throughout the
patches (no image is built), and the model runs as the server's user, not as root (the
container starts as root only to install).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import docker
import pytest

from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, running_controlplane
from docker_support import Cleanup, engine, unique_name
from test_controlplane_docker_development import Watcher, containers, ok, predict, push_development, send, state
from truss_cli.controlplane.runtimes import docker_development
from truss_cli.controlplane.runtimes.base import CONTROL_URL, Handle
from truss_cli.controlplane.runtimes.docker import DockerRuntime
from truss_cli.controlplane.runtimes.environments import ProvisionUnsupported
from truss_cli.image.plan import USER_ID
from truss_cli.settings import Settings

pytestmark = pytest.mark.docker

MODEL = """
import os
import shutil
import subprocess


class Model:
    def predict(self, request):
        try:
            import six
            six_version, six_owner = six.__version__, os.stat(six.__file__).st_uid
        except ImportError:
            six_version = six_owner = None
        jq = shutil.which("jq")
        computed = subprocess.run([jq, "-n", "1 + 1"], capture_output=True, text=True).stdout.strip() if jq else None
        return {{"marker": {marker!r}, "six": six_version, "six_owner": six_owner, "jq": computed, "uid": os.getuid()}}
"""
CONFIG = "model_name: {name}\npython_version: py311\n"


def config(name: str, requirements: tuple[str, ...] = (), system_packages: tuple[str, ...] = ()) -> str:
    text = CONFIG.format(name=name)
    if requirements:
        text += "requirements:\n" + "".join(f"  - {line}\n" for line in requirements)
    if system_packages:
        text += "system_packages:\n" + "".join(f"  - {line}\n" for line in system_packages)
    return text


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def name(client: docker.APIClient) -> Iterator[str]:
    cleanup = Cleanup(client)
    yield cleanup.model(unique_name("dev-docker-reqs"))
    cleanup.run()


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("docker-dev-reqs") / "cp", runtime="docker") as plane:
        yield plane
        plane.client.delete(f"/v1/models/{name}")


@pytest.fixture(scope="module")
def dev(cp: ControlPlaneProcess, name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Watcher]:
    root = write_model_dir(tmp_path_factory.mktemp("tree") / name, MODEL.format(marker="a"), config(name))
    return push_development(cp, root, name), Watcher(root)


def only_container(client: docker.APIClient, deployment: dict[str, Any]) -> str:
    (container,) = containers(client, deployment)
    return container["Id"]


def test_a_requirement_added_then_removed_is_installed_in_the_container_without_a_rebuild(
    client: docker.APIClient, cp: ControlPlaneProcess, dev: Any, name: str
) -> None:
    deployment, watcher = dev
    assert predict(cp, deployment) == {"marker": "a", "six": None, "six_owner": None, "jq": None, "uid": USER_ID}
    container = only_container(client, deployment)

    answer = ok(send(cp, deployment, watcher.edit("config.yaml", config(name, requirements=("six==1.16.0",)))[1]))
    assert answer["action"] == "requirements", answer
    assert answer["requirements"] == {"added": ["six==1.16.0"], "removed": [], "changed": []}
    served = predict(cp, deployment)
    # Installed by the server's user, not root (only apt runs as root in the container).
    assert (served["six"], served["six_owner"]) == ("1.16.0", USER_ID)

    answer = ok(send(cp, deployment, watcher.edit("config.yaml", config(name))[1]))
    assert answer["action"] == "requirements", answer
    assert answer["requirements"]["removed"] == ["six==1.16.0"]
    assert predict(cp, deployment)["six"] is None
    assert only_container(client, deployment) == container  # patched in place, not rebuilt
    assert state(cp, deployment)["rebuild"] is None


def test_a_system_package_added_is_installed_with_apt_in_the_container(
    client: docker.APIClient, cp: ControlPlaneProcess, dev: Any, name: str
) -> None:
    deployment, watcher = dev
    container = only_container(client, deployment)
    answer = ok(send(cp, deployment, watcher.edit("config.yaml", config(name, ("six==1.16.0",), ("jq",)))[1]))
    assert answer["action"] == "requirements", answer
    assert answer["system_packages"] == {"added": ["jq"], "removed": []}
    assert "system_packages changed: +jq" in answer["reason"]
    assert predict(cp, deployment) == {"marker": "a", "six": "1.16.0", "six_owner": USER_ID, "jq": "2", "uid": USER_ID}
    assert only_container(client, deployment) == container


def test_a_failed_install_answers_422_with_the_installers_output_while_the_old_code_serves(
    cp: ControlPlaneProcess, dev: Any, name: str
) -> None:
    deployment, watcher = dev
    before = predict(cp, deployment)
    failed = send(cp, deployment, watcher.edit("config.yaml", config(name, ("six==1.16.0", "does-not-exist-truss-k==9.9"),
                                                                     ("jq",)))[1])
    assert failed.status_code == 422, failed.text
    detail = failed.json()["detail"]
    assert detail["phase"] == "requirements", detail
    assert "does-not-exist-truss-k" in detail["traceback"], detail  # uv's own words about it
    assert predict(cp, deployment) == before
    # The fix (the line removed) builds on the refused tree; then code saves go on as before.
    ok(send(cp, deployment, watcher.edit("config.yaml", config(name, ("six==1.16.0",), ("jq",)))[1]))
    answer = ok(send(cp, deployment, watcher.edit("model/model.py", MODEL.format(marker="b"))[1]))
    assert answer["action"] == "hot_swap", answer
    assert predict(cp, deployment) == {"marker": "b", "six": "1.16.0", "six_owner": USER_ID, "jq": "2", "uid": USER_ID}


def test_a_container_killed_comes_back_with_the_patched_packages(
    client: docker.APIClient, cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    old = only_container(client, deployment)
    client.kill(old)
    deadline = time.monotonic() + 600
    while True:
        if [c for c in containers(client, deployment) if c["Id"] != old]:
            answer = cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=300)
            if answer.status_code == 200:
                break
        assert time.monotonic() < deadline, f"no new replica served within 600 s\n{cp.log()[-3000:]}"
        time.sleep(0.5)
    # The new container installed the start tree's jq and six before serving it.
    assert answer.json() == {"marker": "b", "six": "1.16.0", "six_owner": USER_ID, "jq": "2", "uid": USER_ID}
    # ... with the uv the control plane lent it (fetching one with pip costs ~8 s more).
    log = client.logs(only_container(client, deployment)).decode()
    assert "provision: installing system packages: jq" in log and "fetching uv" not in log, log
    assert state(cp, deployment)["running_patch_point"] == {"hash": watcher.tree.tree_hash()}


def test_a_container_of_an_image_built_before_provisioning_is_rebuilt_instead(tmp_path: Path) -> None:
    """An image an older control plane built has no provision.py: its container runs the old
    command (no --provision, not root) and the runtime refuses to install into it, which the
    Syncer turns into a rebuild (a new image, which has it)."""
    settings = Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", home=tmp_path, environ=dict(os.environ))
    runtime = DockerRuntime(settings, client=engine())
    tree = write_model_dir(tmp_path / "tree", MODEL.format(marker="a"), config("old", ("six==1.16.0",)))
    old = Handle("docker", "deployment", "replica", "http://127.0.0.1:1", {"container_id": "gone", CONTROL_URL: "x"})
    with pytest.raises(ProvisionUnsupported, match="predates"):
        runtime.provision(old, tree)
    assert "--provision" not in docker_development.command(provisions=False)
    assert docker_development.command()[3:7] == ["--provision", docker_development.PROVISION_SPEC_PATH, "--run-as",
                                                 str(USER_ID)]
