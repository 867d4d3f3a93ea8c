"""Images built on a real Docker engine: what the image contains and runs, that secrets stay
out of every layer, and that a code-only edit reuses every layer below the model code."""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import docker
import httpx
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, edge_settings
from docker_support import Cleanup, base_image, engine, unique_name
from truss_cli.cli.app import app
from truss_cli.image.build import BuildFailed, BuildResult, build_image
from truss_cli.image.container import RunningContainer, start_container, wait_until_ready
from truss_cli.image.plan import plan_image

pytestmark = pytest.mark.docker
runner = CliRunner()

PASTED_SECRET = f"pasted-{uuid.uuid4().hex}"
RUNTIME_SECRET = f"runtime-{uuid.uuid4().hex}"
CODE_MARKER = f"code-marker-{uuid.uuid4().hex}"

KITCHEN_MODEL = f'''
import os
import pathlib
import subprocess

import helper

MARKER = "{CODE_MARKER}"


class Model:
    def __init__(self, data_dir, secrets, **kwargs):
        self._data_dir = pathlib.Path(data_dir)
        self._secrets = secrets

    def predict(self, model_input):
        import six

        return {{
            "jq": subprocess.run(["jq", "-n", "[1, 2] | add"], capture_output=True, text=True, check=True).stdout.strip(),
            "six": six.__version__,
            "greeting": os.environ.get("GREETING"),
            "secret": self._secrets.get("api_key"),
            "data": (self._data_dir / "weights.txt").read_text(),
            "helper": helper.VALUE,
            "built": pathlib.Path("/tmp/built.txt").read_text().strip(),
            "uid": os.getuid(),
        }}
'''


def kitchen_config(name: str) -> str:
    return textwrap.dedent(
        f"""\
        model_name: {name}
        requirements_file: requirements/main.txt
        system_packages:
          - jq
        environment_variables:
          GREETING: hello from config
        secrets:
          api_key: {PASTED_SECRET}
        build_commands:
          - echo built at image time > /tmp/built.txt
        """
    )


@pytest.fixture(scope="module")
def client() -> docker.APIClient:
    return engine()


@pytest.fixture(scope="module")
def base(client: docker.APIClient) -> str:
    return base_image(client)


@pytest.fixture(scope="module")
def cleanup(client: docker.APIClient) -> Iterator[Cleanup]:
    tracker = Cleanup(client)
    yield tracker
    tracker.run()


@pytest.fixture(scope="module")
def kitchen_dir(tmp_path_factory: pytest.TempPathFactory, cleanup: Cleanup) -> Path:
    root = tmp_path_factory.mktemp("kitchen") / "kitchen"
    name = cleanup.model(unique_name("truss-test-kitchen"))
    files = {
        "config.yaml": kitchen_config(name),
        "model/__init__.py": "",
        "model/model.py": KITCHEN_MODEL,
        "data/weights.txt": "weights v1",
        "packages/helper.py": "VALUE = 42\n",
        # Includes relative to the including file, as pip reads them; the constraint pins six
        # below its latest release, so the assertion below shows it was applied.
        "requirements/main.txt": "-r shared/base.txt\n-c shared/pins.txt\n",
        "requirements/shared/base.txt": "six\n",
        "requirements/shared/pins.txt": "six==1.16.0\n",
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return root


@pytest.fixture(scope="module")
def kitchen_image(client: docker.APIClient, base: str, kitchen_dir: Path) -> BuildResult:
    return build_image(client, plan_image(kitchen_dir, edge_settings(), base_image=base), edge_settings())


@pytest.fixture(scope="module")
def kitchen_container(client: docker.APIClient, kitchen_image: BuildResult, kitchen_dir: Path) -> Iterator[RunningContainer]:
    plan = plan_image(kitchen_dir, edge_settings())
    container = start_container(
        client, kitchen_image.tag, plan.model_name, 0, environment={"TRUSS_SECRET_api_key": RUNTIME_SECRET}
    )
    try:
        wait_until_ready(container, timeout=120)
        yield container
    finally:
        container.remove()


def predict(url: str, payload: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/model:predict", json=payload, timeout=30)


def test_the_image_runs_the_model_with_everything_its_config_asks_for(kitchen_container: RunningContainer) -> None:
    response = predict(kitchen_container.url, {})
    assert response.status_code == 200, kitchen_container.log_text()
    assert response.json() == {
        "jq": "3",  # a Debian package from system_packages, called by the model
        "six": "1.16.0",  # a requirement from an included file, pinned by an included constraint
        "greeting": "hello from config",  # environment_variables
        "secret": RUNTIME_SECRET,  # supplied at run time, not the value pasted in config.yaml
        "data": "weights v1",  # data/
        "helper": 42,  # packages/
        "built": "built at image time",  # build_commands
        "uid": 10001,  # not root
    }


def test_image_metadata_names_the_model_and_its_content_hash(
    client: docker.APIClient, kitchen_image: BuildResult, kitchen_dir: Path
) -> None:
    plan = plan_image(kitchen_dir, edge_settings())
    config = client.inspect_image(kitchen_image.tag)["Config"]
    assert config["Labels"]["truss.model-name"] == plan.model_name
    assert config["Labels"]["truss.content-hash"] == plan.content_hash
    assert config["User"] == "10001:10001"


def test_no_secret_value_is_in_any_layer_or_in_the_image_metadata(
    client: docker.APIClient, kitchen_image: BuildResult, kitchen_container: RunningContainer, tmp_path: Path
) -> None:
    # `docker save` writes every layer as an uncompressed tar plus the image config and
    # manifest: a byte search over the whole stream covers every file and all metadata.
    needles = {PASTED_SECRET.encode(): False, RUNTIME_SECRET.encode(): False, CODE_MARKER.encode(): False}
    overlap = max(len(needle) for needle in needles)
    tail = b""
    for chunk in client.get_image(kitchen_image.image_id):
        window = tail + chunk
        for needle in needles:
            if needle in window:
                needles[needle] = True
        tail = window[-overlap:]
    # The search works: the model's code is found in its layer...
    assert needles[CODE_MARKER.encode()]
    # ...and neither the value pasted into config.yaml nor the one given at run time is there.
    assert not needles[PASTED_SECRET.encode()]
    assert not needles[RUNTIME_SECRET.encode()]


def test_editing_only_model_code_rebuilds_from_the_model_code_layer_on(
    client: docker.APIClient, base: str, kitchen_image: BuildResult, kitchen_dir: Path, tmp_path: Path
) -> None:
    edited = tmp_path / "kitchen"
    shutil.copytree(kitchen_dir, edited)
    model_py = edited / "model" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# a one-line change\n")

    result = build_image(client, plan_image(edited, edge_settings(), base_image=base), edge_settings())

    assert not result.reused
    code_step = next(step for step in result.steps if step.instruction.startswith("COPY code/"))
    below = [step for step in result.steps if 1 < step.number < code_step.number]
    assert below and all(step.cached for step in below), [(s.instruction, s.cached) for s in below]
    assert not code_step.cached
    # The layers below the model code are the very same layers as in the first image.
    first_history = [layer["Id"] for layer in client.history(kitchen_image.image_id)][::-1]
    second_history = [layer["Id"] for layer in client.history(result.image_id)][::-1]
    shared = next(i for i, (a, b) in enumerate(zip(first_history, second_history)) if a != b)
    assert shared >= code_step.number - 1


def test_an_unchanged_directory_reuses_its_image_without_building(
    base: str, kitchen_image: BuildResult, kitchen_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base)
    result = runner.invoke(app, ["image", "build", str(kitchen_dir)])
    assert result.exit_code == 0, result.output
    assert "reusing image" in result.output
    assert "Step " not in result.output
    assert kitchen_image.tag in result.output


def test_build_reports_json_for_scripts(
    base: str, kitchen_image: BuildResult, kitchen_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base)
    result = runner.invoke(app, ["image", "build", str(kitchen_dir), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"tag": kitchen_image.tag, "image_id": kitchen_image.image_id, "reused": True}


def test_run_detached_mounts_a_secrets_directory(
    client: docker.APIClient, base: str, kitchen_image: BuildResult, kitchen_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base)
    monkeypatch.delenv("TRUSS_SECRET_api_key", raising=False)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "api_key").write_text("from-a-file\n")
    result = runner.invoke(
        app,
        ["image", "run", str(kitchen_dir), "--port", "0", "--detach", "--secrets-dir", str(secrets_dir), "-o", "json"],
    )
    assert result.exit_code == 0, result.output
    started = json.loads(result.stdout)
    try:
        assert predict(started["url"], {}).json()["secret"] == "from-a-file"
    finally:
        client.remove_container(started["container"], force=True)


def test_run_refuses_a_secrets_directory_the_container_user_cannot_read(
    client: docker.APIClient, base: str, kitchen_image: BuildResult, kitchen_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "api_key").write_text("root-only\n")
    (secrets_dir / "api_key").chmod(0o600)
    name = plan_image(kitchen_dir, edge_settings()).model_name
    # By id: a listing also says "Up N seconds", which changes while the test runs.
    before = [c["Id"] for c in client.containers(all=True, filters={"label": f"truss.model-name={name}"})]
    result = runner.invoke(
        app, ["image", "run", str(kitchen_dir), "--port", "0", "--secrets-dir", str(secrets_dir)]
    )
    assert result.exit_code == 1, result.output
    output = result.stderr
    assert "cannot read the secret files api_key" in output
    assert "the container runs as uid 10001" in output
    assert "root-only" not in result.output
    assert [c["Id"] for c in client.containers(all=True, filters={"label": f"truss.model-name={name}"})] == before


def test_a_failing_build_command_prints_the_log_and_names_the_step(
    base: str, cleanup: Cleanup, make_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cleanup.model(unique_name("truss-test-failing"))
    model_dir = make_model_dir(
        "class Model:\n    def predict(self, x):\n        return x\n",
        f"model_name: {name}\nbuild_commands:\n  - echo about to fail && exit 3\n",
    )
    monkeypatch.setenv("TRUSS_BASE_IMAGE", base)
    result = runner.invoke(app, ["image", "build", str(model_dir)])
    cleanup.failed_build(result.output)
    assert result.exit_code == 1
    assert "about to fail" in result.output  # the log
    assert "Image build failed at step" in result.output
    assert "echo about to fail" in result.output.split("Image build failed at step")[1]  # the step is named


def test_a_missing_base_image_suggests_the_override(cleanup: Cleanup, make_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    client = engine()
    name = cleanup.model(unique_name("truss-test-nobase"))
    model_dir = make_model_dir("class Model:\n    def predict(self, x):\n        return x\n", f"model_name: {name}\n")
    missing = f"truss-test-missing-base:{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("TRUSS_BASE_IMAGE", raising=False)
    result = runner.invoke(app, ["image", "build", str(model_dir), "--base-image", missing])
    assert result.exit_code == 1
    assert f"Base image {missing} not found" in result.output
    assert "TRUSS_BASE_IMAGE" in result.output
    assert client.images(filters={"label": f"truss.model-name={name}"}) == []


def test_examples_hello_builds_and_predicts(client: docker.APIClient, base: str, cleanup: Cleanup) -> None:
    plan = plan_image(EXAMPLES / "hello", edge_settings(), base_image=base)
    built = build_image(client, plan, edge_settings(), tag=cleanup.tag(f"truss-test-hello:{uuid.uuid4().hex[:8]}"))
    container = start_container(client, built.tag, cleanup.model(unique_name("truss-test-hello")), 0)
    try:
        wait_until_ready(container, timeout=120)
        response = predict(container.url, {"name": "Docker"})
        assert response.json() == {"greeting": "Hello, Docker!"}
    finally:
        container.remove()


PYDANTIC_1_MODEL = """
import pydantic
from pydantic import BaseModel


class Query(BaseModel):
    name: str


class Answer(BaseModel):
    greeting: str
    pydantic_version: str


class Model:
    def predict(self, query: Query) -> Answer:
        return Answer(greeting=f"Hello, {query.name}!", pydantic_version=str(pydantic.VERSION))
"""


def test_an_image_of_a_model_pinning_pydantic_1_serves_its_typed_predict(
    client: docker.APIClient, base: str, cleanup: Cleanup, make_model_dir
) -> None:
    # The model's pin and the server's packages resolve together in the image's one
    # environment (as in Truss's image); the server works with pydantic 1.
    name = cleanup.model(unique_name("truss-test-pydantic1"))
    model_dir = make_model_dir(PYDANTIC_1_MODEL, f"model_name: {name}\nrequirements:\n  - pydantic<2\n")
    plan = plan_image(model_dir, edge_settings(), base_image=base)
    built = build_image(client, plan, edge_settings(), tag=cleanup.tag(f"truss-test-pydantic1:{uuid.uuid4().hex[:8]}"))
    container = start_container(client, built.tag, name, 0)
    try:
        wait_until_ready(container, timeout=120)
        answer = predict(container.url, {"name": "Docker"}).json()
        assert answer["greeting"] == "Hello, Docker!" and answer["pydantic_version"].startswith("1.")
        invalid = predict(container.url, {"name": ["not", "a", "string"]})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("invalid input: name: ")
        schema = httpx.get(f"{container.url}/v1/models/model/schema", timeout=30).json()
        assert schema["input_schema"]["required"] == ["name"]
    finally:
        container.remove()


def test_a_dockerfile_the_engine_rejects_is_reported_in_its_own_words(
    client: docker.APIClient, base: str, cleanup: Cleanup, make_model_dir
) -> None:
    name = cleanup.model(unique_name("truss-test-rejected"))
    model_dir = make_model_dir("class Model:\n    def predict(self, x):\n        return x\n", f"model_name: {name}\n")
    plan = plan_image(model_dir, edge_settings(), base_image=base)
    # The base image is here: a failure before the first step must not be blamed on it.
    plan.dockerfile += "BOGUS instruction\n"
    with pytest.raises(BuildFailed) as raised:
        build_image(client, plan, edge_settings())
    assert "Base image" not in raised.value.message
    assert "before the first step" in raised.value.message
    assert "unknown instruction: BOGUS" in raised.value.message
    assert any("unknown instruction: BOGUS" in line for line in raised.value.log)


def test_an_invalid_base_image_name_is_a_usage_error(make_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    engine()
    model_dir = make_model_dir("class Model:\n    def predict(self, x):\n        return x\n", "model_name: m\n")
    result = runner.invoke(app, ["image", "build", str(model_dir), "--base-image", "Not-Lower:Case"])
    assert result.exit_code == 2
    assert "'Not-Lower:Case' is not a valid image name" in result.stderr


@pytest.mark.parametrize("extra", [["build"], ["run", "--port", "0"]])
def test_an_invalid_tag_is_a_usage_error(extra: list[str]) -> None:
    engine()
    result = runner.invoke(app, ["image", *extra, str(EXAMPLES / "hello"), "--tag", "Bad Tag"])
    assert result.exit_code == 2, result.output
    assert "--tag 'Bad Tag': not a valid image name" in result.stderr
    assert "Traceback" not in result.output


def run_as_server_user(client: docker.APIClient, image: str, script: str) -> tuple[int, str]:
    """Run `script` in a throwaway container of `image`, as the image's own (server) user."""
    container = client.create_container(image, command=["/bin/sh", "-c", script])
    try:
        client.start(container)
        status = client.wait(container, timeout=60)["StatusCode"]
        return status, client.logs(container).decode(errors="replace")
    finally:
        client.remove_container(container, force=True)


# Replacing a module and adding a new file, as a live-reload layer will.
EDIT_CODE = "id -u && echo '# edited' >> /app/model/model.py && touch /app/model/added.py /app/config.yaml"


def test_a_development_image_lets_the_server_user_replace_model_code(
    client: docker.APIClient, base: str, cleanup: Cleanup
) -> None:
    plan = plan_image(EXAMPLES / "hello", edge_settings(), base_image=base, development=True)
    built = build_image(client, plan, edge_settings(), tag=cleanup.tag(f"truss-test-hello-dev:{uuid.uuid4().hex[:8]}"))
    status, output = run_as_server_user(client, built.tag, EDIT_CODE)
    assert (status, output.split()[0]) == (0, "10001"), output


def test_a_normal_image_keeps_model_code_owned_by_root(client: docker.APIClient, base: str, cleanup: Cleanup) -> None:
    plan = plan_image(EXAMPLES / "hello", edge_settings(), base_image=base)
    built = build_image(client, plan, edge_settings(), tag=cleanup.tag(f"truss-test-hello:{uuid.uuid4().hex[:8]}"))
    status, output = run_as_server_user(client, built.tag, EDIT_CODE)
    assert status != 0
    assert "Permission denied" in output
