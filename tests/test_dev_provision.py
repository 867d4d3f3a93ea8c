"""server/control/provision.py without a container (docs/live-reload.md, "Task K"): the
decisions that need no network. The installs themselves run in a real container in
tests/test_docker_dev_requirements.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from truss_cli.server.control import provision


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An image's layout: its venv's interpreter, the build's requirement lists."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    requirements = tmp_path / "requirements"
    requirements.mkdir()
    (requirements / "server.txt").write_text("fastapi\n")
    (requirements / "model.txt").write_text("six==1.16.0\n")
    (requirements / "constraints.txt").write_text("")
    monkeypatch.setattr(provision, "BASE_VENV", venv)
    monkeypatch.setattr(provision, "IMAGE_REQUIREMENTS", requirements)
    monkeypatch.setattr(provision, "ENVS_DIR", tmp_path / "envs")
    return tmp_path


def test_the_images_own_requirements_serve_on_the_images_venv_and_make_no_environment(image: Path) -> None:
    lines: list[str] = []
    python = provision.provision({"format": 1, "requirements": ["six==1.16.0"], "constraints": []}, lines.append)
    assert python == str(image / "venv" / "bin" / "python")
    assert not (image / "envs").exists() and lines == []


def test_a_tree_whose_requirements_did_not_resolve_keeps_the_images_environment(image: Path) -> None:
    assert provision.provision({"format": 1}, lambda line: None) == str(image / "venv" / "bin" / "python")


def test_an_environment_already_made_for_the_same_lines_is_reused_without_installing(image: Path) -> None:
    target = provision.environment_path(["six==1.17.0"], [])
    (target / "bin").mkdir(parents=True)
    (target / provision.COMPLETE).write_text("")
    lines: list[str] = []
    python = provision.provision({"format": 1, "requirements": ["six==1.17.0"], "constraints": []}, lines.append)
    assert python == str(target / "bin" / "python") and lines == []
    assert provision.environment_path(["six==1.16.0"], []) != target  # other lines, another environment


def test_a_half_made_environment_is_made_again_and_removed_when_that_fails(image: Path) -> None:
    target = provision.environment_path(["six==1.17.0"], [])
    target.mkdir(parents=True)
    (target / "left-over").write_text("")  # no marker: an install that died
    (image / "venv").rename(image / "gone")  # the copy fails
    with pytest.raises(provision.ProvisionFailed, match="copying"):
        provision.provision({"format": 1, "requirements": ["six==1.17.0"], "constraints": []}, lambda line: None)
    assert not target.exists()


def test_a_missing_system_package_without_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(provision.ProvisionFailed) as failed:
        provision.install_system_packages(["no-such-package-truss-k"], lambda line: None)
    assert "no-such-package-truss-k" in str(failed.value) and "root" in str(failed.value)


def test_installed_system_packages_are_not_installed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # would fail if it tried to install
    monkeypatch.setattr(provision, "_dpkg_installed", lambda package: True)
    provision.install_system_packages(["jq", "curl"], lambda line: pytest.fail(line))


def test_project_names_are_pep503_normalised_and_options_have_none() -> None:
    assert provision._project("Six==1.16.0") == "six"
    assert provision._project("typing_extensions>=4") == "typing-extensions"
    assert provision._project("zope.interface") == "zope-interface"
    assert provision._project("requests[socks] ; python_version>'3'") == "requests"
    assert provision._project("--extra-index-url https://example.org/simple") is None
    assert provision._project("https://example.org/pkg.whl") is None


def test_the_entry_point_says_how_to_call_it() -> None:
    done = subprocess.run([sys.executable, "-m", "truss_cli.server.control.provision"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(provision.__file__).parents[3])})
    assert done.returncode == 2 and "usage" in done.stderr


def test_a_spec_of_another_format_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"format": 2}))
    with pytest.raises(ValueError, match="spec.json"):
        provision.load_spec(path)
