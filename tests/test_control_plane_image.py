"""`truss server image` (image/control_plane_image.py): the control plane's own image, built by
the real CLI on the real engine from this checkout and truss-ci-base, then run: `truss` as uid
10001 with no docker CLI, and the control plane itself from the image's default command,
read-only with the manifests' volumes, answering /v1 with an admin key made inside it. Pushed to
a real local registry, the CLI prints the digest reference `truss server manifests --image`
takes. And the walk of docs/kubernetes.md with the image: its control plane, started as the
manifests start it (`--runtime kubernetes`, an engine socket at DOCKER_HOST whose group is a
supplementary group of uid 10001, as the sidecar's), against the fake cluster; the real CLI
pushes a model through it and predicts. One image per module (the first build of the
dependencies' layer is the slow part)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest

from controlplane_checks import eventually
from docker_support import base_image, engine
from kube_fake_api import FakeKubernetesApi
from kube_fake_cluster import FakeCluster, write_kubeconfig
from registry_support import LocalRegistry, start_registry

pytestmark = pytest.mark.docker

TAG = "truss-cli-test:control-plane"
HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"
ENGINE_SOCKET = "/var/run/docker.sock"


def server_image(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truss_cli", "server", "image", "--tag", TAG, "-o", "json", *args],
                          capture_output=True, text=True, timeout=900, env=environment)


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def environment(client: docker.APIClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "HOME": str(home), "TRUSS_CACHE_DIR": str(home / "cache"), "TRUSS_BASE_IMAGE": base_image(client)}


@pytest.fixture(scope="module")
def image(client: docker.APIClient, environment: dict[str, str]) -> Iterator[dict]:
    built = server_image(environment=environment)
    assert built.returncode == 0, built.stderr[-3000:]
    result = json.loads(built.stdout)
    assert result["tag"] == TAG and result["base_image"] == environment["TRUSS_BASE_IMAGE"]
    try:
        yield result
    finally:
        # The tag goes; its build steps stay in the engine's cache for the next run.
        client.remove_image(TAG, force=True, noprune=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One registry for the module: the model image of the walk shares its base layer with the
    control plane's, which the engine then mounts from there instead of sending it again."""
    started = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield started
    finally:
        started.stop()


def run(client: docker.APIClient, command: list[str]) -> str:
    container = client.create_container(TAG, command=command)
    try:
        client.start(container)
        assert client.wait(container, timeout=120)["StatusCode"] == 0, client.logs(container).decode()
        return client.logs(container).decode()
    finally:
        client.remove_container(container, force=True)


def test_truss_runs_in_it_as_uid_10001_without_a_docker_cli(client: docker.APIClient, image: dict) -> None:
    output = run(client, ["sh", "-c", "id -u; id -g; truss --version; command -v docker || echo 'no docker CLI'; "
                                      "python -c 'import docker; print(\"docker SDK\")'"])
    assert output.split("\n")[:5] == ["10001", "10001", "truss-cli 0.1.0", "no docker CLI", "docker SDK"]
    config = client.inspect_image(TAG)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.version"] == "0.1.0"


def test_the_control_plane_runs_from_it_read_only_and_answers_with_an_admin_key(client: docker.APIClient, image: dict) -> None:
    # As the manifests run it: a read-only root; scratch /tmp and cache, a data volume (tmpfs here).
    container = client.create_container(TAG, environment={"HOME": "/tmp"}, host_config=client.create_host_config(
        read_only=True, tmpfs={"/tmp": "", "/var/cache/truss-cli": "uid=10001,gid=10001",
                               "/var/lib/truss-cli": "uid=10001,gid=10001,mode=0700"}))
    try:
        client.start(container)  # the image's own command: `truss server start --foreground` on 0.0.0.0:8800
        address = client.inspect_container(container)["NetworkSettings"]["IPAddress"]
        url = f"http://{address}:8800"

        def answers() -> bool:
            state = client.inspect_container(container)["State"]
            assert state["Running"], client.logs(container).decode()[-3000:]
            try:
                return httpx.get(f"{url}/v1/server", timeout=5).status_code == 401  # up, and wants a key
            except httpx.TransportError:
                return False

        eventually(answers, timeout=120)
        made = client.exec_create(container, ["python", "-m", "truss_cli.controlplane", "create-admin-key",
                                              "--data-dir", "/var/lib/truss-cli"])
        key = client.exec_start(made).decode().strip()
        assert client.exec_inspect(made)["ExitCode"] == 0, key
        server = httpx.get(f"{url}/v1/server", headers={"Authorization": f"Api-Key {key}"}, timeout=30)
        assert server.status_code == 200, server.text
        assert server.json()["data_dir"] == "/var/lib/truss-cli"
        assert server.json()["database"].endswith("/var/lib/truss-cli/controlplane.db")
    finally:
        client.remove_container(container, force=True)


def test_an_unchanged_checkout_reuses_its_image(image: dict, environment: dict[str, str]) -> None:
    again = server_image(environment=environment)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout) | {"reused": None} == image | {"reused": None}
    assert json.loads(again.stdout)["reused"] is True
    assert "Unchanged: reusing" in again.stderr


def test_with_a_registry_it_is_pushed_and_named_by_digest(client: docker.APIClient, image: dict, environment: dict[str, str],
                                                          registry: LocalRegistry) -> None:
    pushed = server_image("--registry", f"{registry.host}/truss", environment=environment)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    client.remove_image(f"{registry.host}/truss/truss-cli-test:control-plane", noprune=True)  # the tag a push adds
    result = json.loads(pushed.stdout)
    repository, digest = result["reference"].split("@")
    assert repository == f"{registry.host}/truss/truss-cli-test" and digest == result["digest"]
    # The registry serves exactly that manifest, as a cluster would pull it.
    manifest = httpx.get(f"http://{registry.host}/v2/truss/truss-cli-test/manifests/{digest}", timeout=30, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == digest
    assert "truss server manifests --image" in pushed.stderr


def test_a_misnamed_registry_or_tag_exits_2_before_building(environment: dict[str, str]) -> None:
    bad_registry = server_image("--registry", "https://registry.example.com/truss", environment=environment)
    assert bad_registry.returncode == 2 and "without a scheme" in bad_registry.stderr
    bad_tag = subprocess.run([sys.executable, "-m", "truss_cli", "server", "image", "--tag", "Bad:Tag:x"],
                             capture_output=True, text=True, timeout=120, env=environment)
    assert bad_tag.returncode == 2 and "--tag 'Bad:Tag:x'" in bad_tag.stderr


def exec_in(client: docker.APIClient, container: str, command: list[str]) -> str:
    made = client.exec_create(container, command)
    output = client.exec_start(made).decode()
    assert client.exec_inspect(made)["ExitCode"] == 0, output
    return output


def test_the_walk_from_the_image_pushes_and_predicts_on_the_fake_cluster(client: docker.APIClient, image: dict,
                                                                          environment: dict[str, str], registry: LocalRegistry,
                                                                          tmp_path: Path) -> None:
    api = FakeKubernetesApi(namespaces=("truss",))
    cluster = FakeCluster(api, client, tmp_path / "kubelet", "truss")
    container = None
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        kubeconfig.chmod(0o644)
        # The manifests' command, on this machine's network (the fake API and the registry are on
        # its loopback; pods on its bridge), with the engine's socket where the sidecar puts its.
        command = ["truss", "server", "start", "--foreground", "--host", "127.0.0.1", "--port", "0",
                   "--data-dir", "/var/lib/truss-cli", "--runtime", "kubernetes", "--namespace", "truss",
                   "--kubeconfig", "/etc/truss-cli/kubeconfig", "--registry", f"{registry.host}/models"]
        container = client.create_container(
            TAG, command=command,
            environment={"HOME": "/tmp", "DOCKER_HOST": "unix:///run/truss-docker/docker.sock",
                         "TRUSS_BASE_IMAGE": environment["TRUSS_BASE_IMAGE"]},
            host_config=client.create_host_config(
                network_mode="host", read_only=True, group_add=[str(os.stat(ENGINE_SOCKET).st_gid)],
                binds={ENGINE_SOCKET: {"bind": "/run/truss-docker/docker.sock", "mode": "rw"},
                       str(kubeconfig): {"bind": "/etc/truss-cli/kubeconfig", "mode": "ro"}},
                tmpfs={"/tmp": "", "/var/cache/truss-cli": "uid=10001,gid=10001",
                       "/var/lib/truss-cli": "uid=10001,gid=10001,mode=0700"}))
        client.start(container)

        def state() -> dict:
            assert client.inspect_container(container)["State"]["Running"], client.logs(container).decode()[-3000:]
            try:
                return json.loads(exec_in(client, container, ["cat", "/var/lib/truss-cli/controlplane.json"]))
            except AssertionError:
                return {}

        url = eventually(state, timeout=120)["url"]
        key = exec_in(client, container, ["python", "-m", "truss_cli.controlplane", "create-admin-key",
                                          "--data-dir", "/var/lib/truss-cli"]).strip()

        def truss(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "truss_cli", *args], capture_output=True, text=True,
                                  timeout=600, env=environment)

        added = truss("remote", "add", "cluster", url, "--api-key", key, "--use")
        assert added.returncode == 0, added.stderr
        pushed = truss("push", str(HELLO), "--remote", "cluster", "--wait", "-o", "json")
        assert pushed.returncode == 0, pushed.stderr[-3000:] + client.logs(container).decode()[-3000:]
        deployment = json.loads(pushed.stdout)["deployment"]
        assert deployment["status"] == "ACTIVE"
        answer = truss("predict", "--model", deployment["model_id"], "--remote", "cluster", "-d", '{"name": "cluster"}')
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout) == {"greeting": "Hello, cluster!"}
        # The model's image went to the registry and its pod runs it by digest.
        (pod,) = cluster.pods()
        assert pod["spec"]["containers"][0]["image"].startswith(f"{registry.host}/models/truss-hello@sha256:")
    finally:
        if container is not None:
            client.remove_container(container, force=True)
        cluster.close()
        api.close()
