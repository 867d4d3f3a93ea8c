"""`truss push --watch` and `truss watch` as a user types them, against a real control plane
(a subprocess with the process runtime, real replicas)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from tests.controlplane_support import ControlPlaneProcess, running_controlplane
from truss_cli.cli.app import app
from truss_cli.client.remotes import add_remote, trussrc_path

runner = CliRunner()


class Remote:
    def __init__(self, cp: ControlPlaneProcess, home: Path) -> None:
        self.cp = cp
        self.home = home

    def truss(self, *args: str):  # type: ignore[no-untyped-def]
        environment = {"HOME": str(self.home), "COLUMNS": "200", "TRUSS_CACHE_DIR": str(self.home / "cache")}
        return runner.invoke(app, list(args), env=environment)

    def model_dir(self, name: str) -> Path:
        directory = self.home / "models" / name
        if not directory.exists():
            shutil.copytree(EXAMPLES / "hello", directory)
        return directory


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("watch")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        yield Remote(cp, home)


@pytest.mark.parametrize(
    "option",
    [["--promote"], ["--deployment-name", "candidate"], ["--version-bump", "MAJOR"]],
    ids=["promote", "deployment-name", "version-bump"],
)
def test_watch_with_a_published_deployment_option_is_a_usage_error_and_sends_nothing(remote: Remote, option: list[str]) -> None:
    directory = remote.model_dir("conflicts")
    done = remote.truss("push", str(directory), "--model-name", "conflicts", "--watch", *option)
    assert done.exit_code == 2, done.output
    assert f"--watch pushes to the model's development deployment; it cannot be combined with {option[0]}" in done.stderr
    models = remote.cp.client.get("/v1/models").json()["models"]
    assert "conflicts" not in [model["name"] for model in models]  # nothing was created


def test_environment_is_not_an_option_of_push(remote: Remote) -> None:
    done = remote.truss("push", str(remote.model_dir("conflicts")), "--watch", "--environment", "staging")
    assert done.exit_code == 2
    assert "--environment" in done.stderr


def test_watch_without_a_development_deployment_says_to_push_with_watch_first(remote: Remote) -> None:
    directory = remote.model_dir("published-only")
    pushed = remote.truss("push", str(directory), "--model-name", "published-only")
    assert pushed.exit_code == 0, pushed.output
    done = remote.truss("watch", str(directory), "--model-name", "published-only")
    assert done.exit_code == 1, done.output
    assert "model published-only has no development deployment" in done.stderr
    assert "run `truss push --watch` first" in done.stderr


def test_watch_of_an_unknown_model_says_to_push_with_watch_first(remote: Remote) -> None:
    done = remote.truss("watch", str(remote.model_dir("never-pushed")), "--model-name", "never-pushed")
    assert done.exit_code == 1, done.output
    assert "run `truss push --watch` first" in done.stderr


def test_watch_names_the_model_from_config_yaml(remote: Remote) -> None:
    directory = remote.model_dir("config-named")
    (directory / "config.yaml").write_text((directory / "config.yaml").read_text().replace("model_name: hello", "model_name: named-in-config"))
    done = remote.truss("watch", str(directory))
    assert done.exit_code == 1, done.output
    assert "model named-in-config has no development deployment" in done.stderr
