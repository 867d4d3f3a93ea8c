"""Images through a real registry (Debian's docker-registry on loopback, started here): push
returns a reference by digest, the image comes back by that digest alone and serves, and a
registry that is not there, refuses the credentials or is misnamed says so clearly."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Iterator

import docker
import docker.errors
import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from conftest import EXAMPLES, edge_settings
from docker_support import Cleanup, base_image, engine, unique_name
from registry_support import LocalRegistry, free_loopback_port, start_registry
from truss_cli.cli import console
from truss_cli.cli.app import app
from truss_cli.cli.push_progress import PushBars
from truss_cli.errors import TrussError, UsageError
from truss_cli.image.build import BuildResult, build_image
from truss_cli.image.container import start_container, wait_until_ready
from truss_cli.image.plan import plan_image
from truss_cli.image.registry import LayerProgress, parse_registry, pull_by_digest, push

runner = CliRunner()
DIGEST_REFERENCE = r"127\.0\.0\.1:\d+/team/truss-hello@sha256:[0-9a-f]{64}"


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    started = start_registry(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def hello_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello with a marker file, so its image is this module's own (removing it cannot
    take away an image another test reuses) while every layer before the model's is cached."""
    model_dir = tmp_path_factory.mktemp("hello") / "hello"
    shutil.copytree(EXAMPLES / "hello", model_dir)
    (model_dir / "model" / "registry_test_marker.py").write_text(f"# {uuid.uuid4().hex}\n")
    return model_dir


@pytest.fixture(scope="module")
def hello_image(client: docker.APIClient, cleanup: Cleanup, hello_dir: Path) -> BuildResult:
    plan = plan_image(hello_dir, edge_settings(), base_image=base_image(client))
    built = build_image(client, plan, edge_settings(), tag=cleanup.tag(f"truss-hello:{uuid.uuid4().hex[:8]}"))
    return built


def local_tags(client: docker.APIClient, image_id: str) -> list[str]:
    try:
        return client.inspect_image(image_id).get("RepoTags") or []
    except docker.errors.ImageNotFound:
        return []


def tiny_image(client: docker.APIClient, cleanup: Cleanup) -> str:
    """A one-file image made with `docker import`: a real image, seconds less to push than a model's."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        content = b"pushed by the registry tests\n"
        member = tarfile.TarInfo("hello.txt")
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))
    tag = cleanup.tag(f"truss-test-tiny:{uuid.uuid4().hex[:8]}")
    client.import_image_from_data(data.getvalue(), *tag.split(":"))
    return tag


@pytest.mark.docker
def test_a_pushed_image_comes_back_by_digest_alone_and_serves(
    client: docker.APIClient, cleanup: Cleanup, registry: LocalRegistry, hello_image: BuildResult
) -> None:
    events: list[LayerProgress] = []
    reference = push(client, hello_image.tag, f"{registry.host}/team", on_progress=events.append)

    assert re.fullmatch(DIGEST_REFERENCE, reference), reference
    assert reference.startswith(f"{registry.host}/team/truss-hello@")
    # Every layer was reported, and each one ended pushed.
    assert {event.layer for event in events if event.done} == {event.layer for event in events}
    assert any(event.status == "Pushed" for event in events)
    # The registry serves the manifest under exactly that digest.
    digest = reference.split("@")[1]
    manifest = httpx.head(
        f"http://{registry.host}/v2/team/truss-hello/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == digest

    # Gone from this machine (every tag, so the image itself), then back from the registry.
    client.remove_image(hello_image.image_id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.inspect_image(hello_image.image_id)
    pulled = []
    image_id = pull_by_digest(client, reference, on_progress=pulled.append)
    assert image_id == hello_image.image_id  # the same image, not merely one of the same name
    assert any(event.status == "Pull complete" for event in pulled)

    container = start_container(client, reference, cleanup.model(unique_name("truss-test-registry")), 0)
    try:
        wait_until_ready(container, timeout=120)
        response = httpx.post(f"{container.url}/v1/models/model:predict", json={"name": "registry"}, timeout=30)
        assert response.json() == {"greeting": "Hello, registry!"}
    finally:
        container.remove()
    cleanup.tag(reference)


@pytest.mark.docker
def test_a_registry_that_is_not_there_is_named_with_how_to_check_it(client: docker.APIClient, cleanup: Cleanup) -> None:
    image = tiny_image(client, cleanup)
    host = f"127.0.0.1:{free_loopback_port()}"
    cleanup.tag(f"{host}/team/truss-test-tiny:{image.split(':')[1]}")
    with pytest.raises(TrussError) as raised:
        push(client, image, f"{host}/team")
    assert f"Registry {host} is not reachable" in raised.value.message
    assert "connection refused" in raised.value.message
    assert f"curl -i http://{host}/v2/" in (raised.value.hint or "")  # loopback: the engine spoke plain HTTP


@pytest.mark.docker
def test_credentials_come_from_the_docker_config_and_a_refusal_names_the_registry(
    client: docker.APIClient, cleanup: Cleanup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tiny_image(client, cleanup)
    locked = start_registry(tmp_path / "locked", users={"truss": "s3cret"})
    try:
        cleanup.tag(f"{locked.host}/team/truss-test-tiny:{image.split(':')[1]}")
        with pytest.raises(TrussError) as raised:
            push(client, image, f"{locked.host}/team", auth_config={"username": "truss", "password": "wrong"})
        assert f"Registry {locked.host} refused the credentials" in raised.value.message
        assert f"docker login {locked.host}" in (raised.value.hint or "")

        # `docker login` writes this; a client made with DOCKER_CONFIG pointing here sends it.
        config_dir = tmp_path / "docker-config"
        config_dir.mkdir()
        token = base64.b64encode(b"truss:s3cret").decode()
        (config_dir / "config.json").write_text(json.dumps({"auths": {locked.host: {"auth": token}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
        logged_in = docker.from_env(timeout=600).api
        reference = push(logged_in, image, f"{locked.host}/team")
        assert re.fullmatch(rf"{re.escape(locked.host)}/team/truss-test-tiny@sha256:[0-9a-f]{{64}}", reference)
    finally:
        locked.stop()


@pytest.mark.docker
def test_cli_push_prints_the_digest_reference(
    client: docker.APIClient, cleanup: Cleanup, registry: LocalRegistry, hello_dir: Path, hello_image: BuildResult
) -> None:
    _ensure_local(client, hello_image)
    env = {"TRUSS_BASE_IMAGE": base_image(client)}
    command = ["image", "push", str(hello_dir), "--registry", f"{registry.host}/team"]
    as_json = runner.invoke(app, [*command, "--output", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    # Without --tag the image gets its default name (truss-hello:<content hash>), pushed under the same tag.
    cleanup.tag(data["tag"])
    cleanup.tag(data["pushed_tag"])
    assert data["image_id"] == hello_image.image_id and data["reused"]  # the image built before, not rebuilt
    assert re.fullmatch(DIGEST_REFERENCE, data["reference"]), as_json.output
    assert data["pushed_tag"] == f"{data['reference'].split('@')[0]}:{data['tag'].split(':')[1]}"

    text = runner.invoke(app, command, env=env)
    assert text.exit_code == 0, text.output
    assert text.stdout.strip() == data["reference"]  # the same bytes, the same digest
    assert f"Unchanged: reusing image {data['tag']}" in text.stderr
    assert text.stderr.count(f"Pushing to {registry.host}/team") == 1  # not a terminal: plain lines
    assert "layers sent" in text.stderr


@pytest.mark.parametrize(
    ("registry", "says", "suggests"),
    [
        ("http://127.0.0.1:5000/team", "without a scheme", "--registry 127.0.0.1:5000/team"),
        ("Registry.Example.com/Team", "lowercase", "--registry registry.example.com/team"),
        ("team/models", "Docker Hub account", "--registry docker.io/team/models"),
        ("127.0.0.1:5000/bad..prefix", "not a repository path", "--registry"),
    ],
)
def test_a_misnamed_registry_is_refused_before_any_build_with_the_expected_form(
    registry: str, says: str, suggests: str
) -> None:
    with pytest.raises(UsageError) as raised:
        parse_registry(registry)
    assert says in raised.value.message and suggests in (raised.value.hint or "")

    # The CLI refuses it before planning or building anything (no engine needed).
    result = runner.invoke(app, ["image", "push", str(EXAMPLES / "hello"), "--registry", registry])
    assert result.exit_code == 2
    assert says in result.stderr


def test_a_registry_is_a_host_and_an_optional_prefix() -> None:
    assert parse_registry("127.0.0.1:5000").repository("m") == "127.0.0.1:5000/m"
    assert parse_registry("localhost:5000/a/b/").repository("m") == "localhost:5000/a/b/m"
    assert parse_registry("registry.example.com/team").repository("m") == "registry.example.com/team/m"


def _ensure_local(client: docker.APIClient, image: BuildResult) -> None:
    """The first test removes the image and pulls it back by digest; without that test (run
    alone), it is still here. Either way the build's tag must name it again."""
    if image.tag not in local_tags(client, image.image_id):
        client.tag(image.image_id, *image.tag.rsplit(":", 1))


def test_push_bars_on_a_terminal_show_each_layer_and_never_more_than_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=True, width=100))
    with PushBars("127.0.0.1:5000/team") as bars:
        bars(LayerProgress("aaa", "Preparing"))
        bars(LayerProgress("bbb", "Preparing"))
        bars(LayerProgress("aaa", "Pushing", 500, 1000))
        bars(LayerProgress("aaa", "Pushing", 1300, 1000))  # the engine's count can pass its stated total
        bars._progress.refresh()
        bars(LayerProgress("bbb", "Layer already exists"))
        bars(LayerProgress("aaa", "Pushed"))
        bars._progress.refresh()
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r"aaa Pushed +━+ 1\.0/1\.0 kB", drawn), drawn
    assert "bbb Layer already exists" in drawn
    assert "1.3/1.0 kB" not in drawn
    assert (bars.sent_layers, bars.existing_layers) == (1, 1)
