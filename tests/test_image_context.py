"""`truss image build-context`: what goes into an image, without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import docker
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, edge_settings
from truss_cli.cli.app import app
from truss_cli.errors import TrussError, UsageError
from truss_cli.image.build import build_image, check_tag
from truss_cli.image.container import check_secrets_dir, start_container
from truss_cli.image.plan import USER_ID, plan_image
from truss_cli.server.secrets import SecretNotFound, Secrets

runner = CliRunner()

SECRET_VALUE = "pasted-secret-4c1f9e"
PREDICTING_MODEL = "class Model:\n    def predict(self, x):\n        return x\n"

KITCHEN_CONFIG = f"""\
model_name: kitchen
python_version: py311
requirements_file: reqs.txt
system_packages: [jq]
environment_variables:
  GREETING: "hi $USER"
secrets:
  api_key: {SECRET_VALUE}
build_commands:
  - echo built > /tmp/built
external_package_dirs:
  - ../shared
"""


@pytest.fixture
def kitchen(tmp_path: Path) -> Path:
    root = tmp_path / "kitchen"
    files = {
        "config.yaml": KITCHEN_CONFIG,
        "reqs.txt": "six\n",
        "model/__init__.py": "",
        "model/model.py": "class Model:\n    def predict(self, x):\n        return x\n",
        "data/weights.bin": "w",
        "packages/helper.py": "VALUE = 1\n",
        ".truss_ignore": "*.ckpt\n",
        "big.ckpt": "ignored",
        "model/__pycache__/model.cpython-311.pyc": "junk",
        ".git/config": "junk",
        ".venv/pyvenv.cfg": "",
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    (tmp_path / "shared" / "shared_lib").mkdir(parents=True)
    (tmp_path / "shared" / "shared_lib" / "__init__.py").write_text("")
    return root


def context_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if re.match(r"^[A-Z]+ ", line)]


def test_build_context_lays_out_one_directory_per_layer_and_respects_ignores(kitchen: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out), "--base-image", "base:1"])
    assert result.exit_code == 0, result.output
    files = context_files(out)
    assert {
        "Dockerfile",
        "config.yaml",
        "install_python.sh",
        "requirements/model.txt",
        "requirements/server.txt",
        "code/model/model.py",
        "code/model/__init__.py",
        "code/reqs.txt",
        "code/.truss_ignore",
        "data/weights.bin",
        "packages/helper.py",
        "packages/shared_lib/__init__.py",  # external package dirs merge into /packages
        "server/truss_cli/server/__main__.py",
        "server/truss_cli/server/replica_config.py",
        "replica.json",
    } <= files
    # The CLI validated config.yaml; the server reads the replica config instead.
    assert "server/truss_cli/config.py" not in files
    assert not [name for name in files if "ckpt" in name or "__pycache__" in name or ".git/" in name or ".venv" in name]
    assert (out / "requirements/model.txt").read_text() == "six\n"
    assert "fastapi" in (out / "requirements/server.txt").read_text()


def test_secret_values_pasted_into_config_yaml_stay_out_of_the_context(kitchen: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out), "--base-image", "base:1"])
    assert result.exit_code == 0, result.output
    assert "api_key" in result.output and "run time" in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET_VALUE.encode() not in path.read_bytes(), path
    # The name survives: the server still knows which secrets the model may read.
    assert "api_key" in (out / "config.yaml").read_text()
    replica = json.loads((out / "replica.json").read_text())
    assert replica["secrets"] == {"api_key": None} and replica["model_config"]["secrets"] == {"api_key": None}


def test_dockerfile_orders_layers_from_rarely_to_often_changing(kitchen: Path) -> None:
    lines = instructions(plan_image(kitchen, edge_settings(), base_image="base:1").dockerfile)

    def position(prefix: str) -> int:
        return next(index for index, line in enumerate(lines) if line.startswith(prefix))

    order = [
        "FROM base:1",
        "RUN apt-get update",
        "RUN sh /opt/truss/requirements/install_python.sh",
        "COPY --chown=10001:10001 data/",
        "COPY server/",
        "COPY packages/ /packages/",
        "COPY code/ /app/",
        'RUN ["/bin/sh", "-c", "echo built > /tmp/built"]',
        "COPY config.yaml",
    ]
    positions = [position(prefix) for prefix in order]
    assert positions == sorted(positions), list(zip(order, positions))
    assert lines[-1].startswith('CMD ["/opt/truss/venv/bin/python", "-m", "truss_cli.server", "/app"')
    assert "USER 10001:10001" in lines
    assert 'ENV GREETING="hi \\$USER"' in lines
    assert "ENV TRUSS_REPLICA_CONFIG=/opt/truss/replica.json" in lines


def test_a_development_image_gives_the_model_code_to_the_server_user(kitchen: Path) -> None:
    normal = plan_image(kitchen, edge_settings(), base_image="base:1")
    development = plan_image(kitchen, edge_settings(), base_image="base:1", development=True)
    lines = instructions(development.dockerfile)
    owned = "--chown=10001:10001"
    for source in ("packages/", "code/", "config.yaml"):
        assert any(line.startswith(f"COPY {owned} {source}") for line in lines), source
        assert any(line.startswith(f"COPY {source}") for line in instructions(normal.dockerfile)), source
    assert "RUN chown 10001:10001 /app" in lines  # new top-level files can be added too
    assert "COPY server/ /opt/truss/server/" in lines  # the server itself stays root's
    # Same files, another image: neither may be mistaken for the other.
    assert development.content_hash == normal.content_hash
    assert development.default_tag == normal.default_tag + "-dev"
    assert development.build_key("base-id") != normal.build_key("base-id")


def test_base_image_precedence_flag_then_environment_then_config_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m"
    (model / "model").mkdir(parents=True)
    (model / "model" / "model.py").write_text(PREDICTING_MODEL)
    (model / "config.yaml").write_text("python_version: py312\n")
    monkeypatch.delenv("TRUSS_BASE_IMAGE", raising=False)
    assert plan_image(model, edge_settings()).base_image == "python:3.12-slim"

    (model / "config.yaml").write_text(
        "python_version: py312\nbase_image:\n  image: custom:2\n  python_executable_path: /opt/py/bin/python3\n"
    )
    plan = plan_image(model, edge_settings())
    assert (plan.base_image, plan.python_executable) == ("custom:2", "/opt/py/bin/python3")
    assert "install_python.sh 3.12 /opt/py/bin/python3" in plan.dockerfile

    monkeypatch.setenv("TRUSS_BASE_IMAGE", "offline:1")
    plan = plan_image(model, edge_settings())
    # The override replaces the image, and with it the path that belonged to that image.
    assert (plan.base_image, plan.python_executable) == ("offline:1", "")
    assert plan_image(model, edge_settings(), base_image="flag:1").base_image == "flag:1"


def test_the_content_hash_label_changes_with_the_code_only(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "model").mkdir(parents=True)
    (model / "config.yaml").write_text("model_name: m\n")
    (model / "model" / "model.py").write_text(PREDICTING_MODEL)
    first = plan_image(model, edge_settings(), base_image="b:1")
    (model / "model" / "__pycache__").mkdir()
    (model / "model" / "__pycache__" / "x.pyc").write_text("junk")
    assert plan_image(model, edge_settings(), base_image="b:1").content_hash == first.content_hash
    (model / "model" / "model.py").write_text(PREDICTING_MODEL + "# edited\n")
    second = plan_image(model, edge_settings(), base_image="b:1")
    assert second.content_hash != first.content_hash
    assert f'"truss.content-hash"="{second.content_hash}"' in second.dockerfile
    assert second.default_tag == f"truss-m:{second.content_hash[:12]}"


def test_an_existing_non_empty_output_directory_is_refused_and_left_alone(kitchen: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert context_files(out) == {"mine.txt"}
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".ctx")] == []


def test_a_missing_requirements_file_names_the_key_and_writes_nothing(kitchen: Path, tmp_path: Path) -> None:
    (kitchen / "reqs.txt").unlink()
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out)])
    assert result.exit_code == 2
    assert "requirements_file" in result.output and "reqs.txt" in result.output
    assert not out.exists()


def test_an_invalid_config_is_a_config_error(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.yaml").write_text("runtime:\n  predict_concurrency: two\n")
    result = runner.invoke(app, ["image", "build-context", str(model), str(tmp_path / "ctx")])
    assert result.exit_code == 2
    assert "runtime.predict_concurrency" in result.output
    assert not (tmp_path / "ctx").exists()


def test_examples_render(tmp_path: Path) -> None:
    for name in ("hello", "text-classifier"):
        out = tmp_path / name
        result = runner.invoke(app, ["image", "build-context", str(EXAMPLES / name), str(out)])
        assert result.exit_code == 0, result.output
        assert (out / "code/model/model.py").is_file()
    assert (tmp_path / "text-classifier/data/reviews.csv").is_file()
    assert "scikit-learn" in (tmp_path / "text-classifier/requirements/model.txt").read_text()


def test_no_engine_reachable_says_how_to_start_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    result = runner.invoke(app, ["image", "build", str(EXAMPLES / "hello")])
    assert result.exit_code == 1
    assert "No Docker engine reachable" in result.output
    assert "dockerd" in result.output


def test_an_output_directory_inside_the_model_directory_is_refused(kitchen: Path) -> None:
    # Written there, the next plan would take the context for model files and bake it in.
    for out in (kitchen / "ctx", kitchen, kitchen / "data" / "ctx"):
        result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out), "--base-image", "b:1"])
        assert result.exit_code == 2, out
        assert "inside the model directory" in result.stderr
    assert not (kitchen / "ctx").exists() and not (kitchen / "data" / "ctx").exists()


def test_an_environment_variable_name_that_would_break_the_dockerfile_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "model").mkdir(parents=True)
    (model / "model" / "model.py").write_text(PREDICTING_MODEL)
    (model / "config.yaml").write_text('environment_variables:\n  "BAD KEY\\nRUN evil": x\n')
    result = runner.invoke(app, ["image", "build-context", str(model), str(tmp_path / "ctx")])
    assert result.exit_code == 2
    assert "environment_variables" in result.output and "not a valid variable name" in result.output


def test_several_system_packages_in_one_entry_are_quoted_one_by_one(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "model").mkdir(parents=True)
    (model / "model" / "model.py").write_text(PREDICTING_MODEL)
    # Truss accepts this; a newline must not end the RUN line early.
    (model / "config.yaml").write_text('system_packages:\n  - "ffmpeg libsm6"\n  - "jq\\nLABEL injected=1"\n')
    dockerfile = plan_image(model, edge_settings(), base_image="b:1").dockerfile
    assert "install -y --no-install-recommends ffmpeg libsm6 jq LABEL injected=1 " in dockerfile
    assert "\nLABEL injected" not in dockerfile


@pytest.mark.parametrize("port", ["-1", "70000"])  # 0 means "any free port"
def test_a_port_out_of_range_is_a_usage_error(port: str) -> None:
    result = runner.invoke(app, ["image", "run", str(EXAMPLES / "hello"), "--port", port])
    assert result.exit_code == 2
    assert "--port" in result.output
    assert "Traceback" not in result.output


def test_links_never_bring_outside_content_into_the_context(kitchen: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE-KEY-7f3a")
    (kitchen / "home").symlink_to(home, target_is_directory=True)
    (kitchen / "data" / "current.bin").symlink_to("weights.bin")  # inside: followed
    (kitchen / "model" / "vendored").symlink_to("../packages", target_is_directory=True)  # inside: kept

    refused = runner.invoke(app, ["image", "build-context", str(kitchen), str(tmp_path / "refused")])
    assert refused.exit_code == 2
    output = refused.stderr
    assert f"home: a symbolic link to {home.resolve()}" in output
    assert "list it in .truss_ignore" in output
    assert not (tmp_path / "refused").exists()

    (kitchen / ".truss_ignore").write_text("*.ckpt\n/home\n")
    out = tmp_path / "ctx"
    result = runner.invoke(app, ["image", "build-context", str(kitchen), str(out)])
    assert result.exit_code == 0, result.output
    contents = b"".join(
        (Path(directory) / name).read_bytes()
        for directory, _, names in os.walk(out)  # os.walk does not follow links
        for name in names
        if not (Path(directory) / name).is_symlink()
    )
    assert b"PRIVATE-KEY" not in contents
    assert (out / "data" / "current.bin").read_text() == "w" and not (out / "data" / "current.bin").is_symlink()
    assert os.readlink(out / "code" / "model" / "vendored") == "../packages"


@pytest.mark.parametrize(
    "tag",
    ["m", "truss-hello:0123abcdef01", "localhost:5000/team/m:v1.2", "registry.example.com/a__b/c-d.e", "m:V_1-x.y"],
)
def test_valid_tags_pass(tag: str) -> None:
    check_tag(tag)


@pytest.mark.parametrize(
    "tag", ["Bad Tag", "Model:1", "m:b:c", "m/", "-m", ":v1", "m:.v1", "m:" + "v" * 129, "m@sha256:" + "0" * 64, "m:v1\n"]
)
def test_invalid_tags_are_usage_errors_before_the_engine_is_asked(tag: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        check_tag(tag)
    assert raised.value.message.startswith(f"--tag {tag!r}: not a valid image name (")
    # build_image checks first: this client points at no engine, and is never used.
    nowhere = docker.APIClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    with pytest.raises(UsageError):
        build_image(nowhere, plan_image(EXAMPLES / "hello", edge_settings(), base_image="b:1"), edge_settings(), tag=tag)


def model_with_config(tmp_path: Path, config_yaml: str) -> Path:
    model = tmp_path / "m"
    (model / "model").mkdir(parents=True)
    (model / "model" / "model.py").write_text(PREDICTING_MODEL)
    (model / "config.yaml").write_text(config_yaml)
    return model


@pytest.mark.parametrize("value", ["line one\\nline two", "carriage\\rreturn"])
def test_a_multi_line_environment_variable_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    # The image's ENV would hold a literal backslash-n where `truss run` gives a newline.
    model = model_with_config(tmp_path, f'environment_variables:\n  OK: fine\n  PROMPT: "{value}"\n')
    result = runner.invoke(app, ["image", "build-context", str(model), str(tmp_path / "ctx")])
    assert result.exit_code == 2
    output = result.stderr
    assert f"{model / 'config.yaml'}: environment_variables.PROMPT:" in output
    assert "multi-line values cannot be set in an image" in output
    assert "use a secret or a file in data/" in output
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize(
    ("config_yaml", "message"),
    [
        ('base_image:\n  image: "img:1\\nRUN evil"\n', "base_image.image: 'img:1\\nRUN evil' is not a valid image name"),
    ],
)
def test_whitespace_in_names_that_go_unquoted_into_the_dockerfile_is_refused(
    tmp_path: Path, config_yaml: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRUSS_BASE_IMAGE", raising=False)
    model = model_with_config(tmp_path, config_yaml)
    with pytest.raises(UsageError) as raised:
        plan_image(model, edge_settings())
    assert raised.value.message.startswith(f"{model / 'config.yaml'}: {message}")


def test_whitespace_in_a_base_image_override_is_refused_naming_its_source(tmp_path: Path) -> None:
    model = model_with_config(tmp_path, "")
    with pytest.raises(UsageError, match=r"^--base-image: 'b:1 AS x' is not a valid image name"):
        plan_image(model, edge_settings(), base_image="b:1 AS x")


def test_secret_files_the_container_user_cannot_read_fail_before_anything_starts(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o755)
    for name, mode in [("api_key", 0o600), ("readable", 0o644), ("token", 0o640)]:
        (secrets_dir / name).write_text("value")
        (secrets_dir / name).chmod(mode)
    # This client points at no engine: the check comes before any request.
    nowhere = docker.APIClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    with pytest.raises(TrussError) as raised:
        start_container(nowhere, "image:1", "m", 8080, secrets_dir=secrets_dir)
    assert raised.value.message == f"{secrets_dir}: the container cannot read the secret files api_key, token"
    assert raised.value.hint == "the container runs as uid 10001: make them readable (chmod o+r) or mount a copy"

    (secrets_dir / "api_key").chmod(0o644)
    if os.geteuid() == 0:  # only root can hand a file to another user
        os.chown(secrets_dir / "token", USER_ID, -1)  # the container's own user may read 0640
    else:
        (secrets_dir / "token").chmod(0o644)
    check_secrets_dir(secrets_dir)

    secrets_dir.chmod(0o700)
    with pytest.raises(TrussError, match="cannot open files in this directory"):
        check_secrets_dir(secrets_dir)


def test_a_secret_file_the_server_may_not_read_is_reported_as_such_without_its_value() -> None:
    # What the model sees in a container whose secrets mount it cannot read (uid 10001 and a
    # root-owned 0600 file): a missing secret that names the permission problem.
    with tempfile.TemporaryDirectory() as directory:  # under /tmp: reachable for another user
        os.chmod(directory, 0o755)
        secrets_dir = Path(directory)
        (secrets_dir / "api_key").write_text("do-not-print-9d1e")
        (secrets_dir / "api_key").chmod(0o600 if os.geteuid() == 0 else 0o000)
        secrets = Secrets({"api_key": None}, environ={"TRUSS_SECRET_api_key": "env-value"}, secrets_dir=secrets_dir)
        with another_user():  # root reads any file
            missing = secrets.missing()
            fetched = secrets.get("api_key")
            with pytest.raises(SecretNotFound) as raised:
                secrets["api_key"]
    assert missing == ["api_key"] and fetched is None
    message = str(raised.value)
    assert message.startswith(f"secret 'api_key': {secrets_dir / 'api_key'} cannot be read by this process (uid ")
    assert "permission denied; make the file and its directory readable" in message
    assert "do-not-print" not in message


@contextmanager
def another_user() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
