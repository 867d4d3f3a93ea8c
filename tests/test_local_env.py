"""The local runtime's pieces: choosing a Python, and the cached virtual environments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HOST_SEARCH, installed_python
from truss_cli.config import parse_config
from truss_cli.errors import TrussError, UsageError
from truss_cli.local.environments import EnvironmentSpec, ensure_environment, spec_for_model
from truss_cli.local.interpreters import (
    Interpreter,
    candidate_paths,
    NoInterpreterError,
    probe,
    select_interpreter,
)

CURRENT = probe(sys.executable)
PY39 = installed_python((3, 9))
PY311 = installed_python((3, 11))
PY312 = installed_python((3, 12))
PY313 = installed_python((3, 13))


def spec(**overrides) -> EnvironmentSpec:
    values = dict(interpreter=CURRENT, requirements=(), server_requirements=())
    values.update(overrides)
    return EnvironmentSpec(**values)


def link_python(directory: Path, interpreter: Interpreter) -> None:
    """Put `pythonX.Y` for `interpreter` into `directory` (a stand-in for a PATH entry)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"python{interpreter.minor[0]}.{interpreter.minor[1]}").symlink_to(interpreter.path)


# --- choosing a Python -----------------------------------------------------------------


@pytest.mark.skipif(PY39 is None, reason="Python 3.9 is not installed here")
def test_the_requested_version_is_used_when_installed() -> None:
    selection = select_interpreter((3, 9), *HOST_SEARCH)
    assert selection.interpreter.minor == (3, 9)
    assert selection.exact and selection.warning() is None
    # It was really run: the version is what the binary reports, not what its name says.
    out = subprocess.run([str(selection.interpreter.path), "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"Python {selection.interpreter.version_text}"


@pytest.mark.skipif(PY312 is None, reason="Python 3.12 is not installed here")
def test_a_missing_version_falls_back_to_the_nearest_with_a_warning(tmp_path: Path) -> None:
    link_python(tmp_path / "bin", PY312)
    selection = select_interpreter(
        (3, 9), search_path=str(tmp_path / "bin"), pyenv_root=tmp_path / "no-pyenv", include_current=False
    )
    assert selection.interpreter.minor == (3, 12)
    assert not selection.exact
    warning = selection.warning()
    assert "Python 3.9" in warning and f"Python {PY312.version_text}" in warning and "Docker" in warning
    assert "\n" not in warning


@pytest.mark.skipif(None in (PY311, PY312, PY313), reason="needs Python 3.11, 3.12 and 3.13")
def test_the_nearest_version_wins_and_a_tie_goes_to_the_newer(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-pyenv"
    link_python(tmp_path / "a", PY312)
    link_python(tmp_path / "a", PY313)
    assert select_interpreter((3, 10), str(tmp_path / "a"), nowhere, include_current=False).interpreter.minor == (3, 12)

    link_python(tmp_path / "b", PY311)
    link_python(tmp_path / "b", PY313)
    tie = select_interpreter((3, 12), str(tmp_path / "b"), nowhere, include_current=False)
    assert tie.interpreter.minor == (3, 13)


def test_a_candidate_that_does_not_start_is_skipped(tmp_path: Path) -> None:
    # Like a pyenv shim for a version that is not selected: on PATH, but exits non-zero.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3.9"
    fake.write_text("#!/bin/sh\necho 'pyenv: python3.9: command not found' >&2\nexit 127\n")
    fake.chmod(0o755)
    assert probe(fake) is None
    selection = select_interpreter((3, 9), str(bin_dir), tmp_path / "no-pyenv", include_current=True)
    assert selection.interpreter.path != fake
    assert selection.interpreter.minor == CURRENT.minor


def test_pyenv_installs_are_found_highest_patch_first(tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    major, minor = CURRENT.minor
    for version in (f"{major}.{minor}.2", f"{major}.{minor}.18"):
        (root / "versions" / version / "bin").mkdir(parents=True)
        (root / "versions" / version / "bin" / "python").symlink_to(CURRENT.path)
    found = select_interpreter(CURRENT.minor, search_path="", pyenv_root=root, include_current=False)
    assert found.interpreter.minor == CURRENT.minor
    assert [p.parent.parent.name for p in candidate_paths(CURRENT.minor, "", root)] == [
        f"{major}.{minor}.18",
        f"{major}.{minor}.2",
    ]


def test_no_python_at_all_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoInterpreterError, match="no Python 3.9, 3.10, 3.11, 3.12, 3.13, 3.14 found"):
        select_interpreter((3, 11), search_path=str(tmp_path), pyenv_root=tmp_path, include_current=False)


# --- the cache key -----------------------------------------------------------------------


def test_the_key_depends_on_what_goes_into_the_environment(tmp_path: Path) -> None:
    base = spec(requirements=("numpy==2.0", "requests"), server_requirements=("fastapi>=0.110",))
    assert base.key() == spec(requirements=("requests", "numpy==2.0"), server_requirements=("fastapi>=0.110",)).key()
    assert base.key() != spec(requirements=("numpy==2.1", "requests"), server_requirements=("fastapi>=0.110",)).key()
    assert base.key() != spec(requirements=("numpy==2.0", "requests"), server_requirements=("fastapi>=0.111",)).key()
    other_python = Interpreter(path=CURRENT.path, version=(3, CURRENT.version[1], CURRENT.version[2] + 1))
    assert base.key() != spec(
        interpreter=other_python, requirements=("numpy==2.0", "requests"), server_requirements=("fastapi>=0.110",)
    ).key()



def test_spec_for_model_reads_the_requirements_file_and_its_includes(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-r base.txt\nrequests\n-c constraints.txt\n")
    (tmp_path / "base.txt").write_text("numpy==2.0  # pinned\n")
    (tmp_path / "constraints.txt").write_text("urllib3<3\n")
    config = parse_config("requirements_file: requirements.txt\n").config
    first = spec_for_model(tmp_path, config, CURRENT)
    assert first.requirements == ("numpy==2.0", "requests")
    assert first.constraints == ("urllib3<3",)
    assert any(item.startswith("fastapi") for item in first.server_requirements)
    # Editing an included file changes what goes into the environment, so its key.
    (tmp_path / "base.txt").write_text("numpy==2.1\n")
    second = spec_for_model(tmp_path, config, CURRENT)
    assert second.key() != first.key()
    (tmp_path / "constraints.txt").write_text("urllib3<2\n")
    assert spec_for_model(tmp_path, config, CURRENT).key() != second.key()


def test_spec_for_model_names_a_missing_requirements_file_and_a_local_path(tmp_path: Path) -> None:
    missing = parse_config("requirements_file: reqs/prod.txt\n")
    with pytest.raises(UsageError, match=r"requirements_file: 'reqs/prod.txt' not found"):
        spec_for_model(tmp_path, missing.config, CURRENT)
    # An image could not install it, so neither does `truss run`: the two stay the same.
    local = parse_config("requirements: [./mylib]\n")
    with pytest.raises(UsageError, match=r"requirements\[0\]: './mylib' is a local path"):
        spec_for_model(tmp_path, local.config, CURRENT)


# --- building and reusing environments ----------------------------------------------------


def test_an_environment_is_built_once_and_then_reused(tmp_path: Path) -> None:
    steps: list[str] = []
    first = ensure_environment(spec(), tmp_path, environ=os.environ, on_progress=steps.append)
    assert first.created
    assert any("Creating a virtual environment" in step for step in steps)
    identity = (first.path.stat().st_ino, (first.path / "pyvenv.cfg").stat().st_mtime_ns)

    steps.clear()
    second = ensure_environment(spec(), tmp_path, environ=os.environ, on_progress=steps.append)
    assert not second.created and second.path == first.path
    assert steps == []
    assert (second.path.stat().st_ino, (second.path / "pyvenv.cfg").stat().st_mtime_ns) == identity
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [first.path.name]  # no staging left

    # Renamed into place after it was built, and its Python still works there.
    out = subprocess.run([str(second.python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert out.stdout.strip() == str(second.path)


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    missing_wheel = tmp_path / "nowhere" / "ghost-1.0-py3-none-any.whl"
    broken = spec(requirements=(f"ghost @ {missing_wheel.as_uri()}",))
    with pytest.raises(TrussError) as failure:
        ensure_environment(broken, tmp_path, environ=os.environ)
    assert "installing the requirements failed" in failure.value.message
    assert "ghost" in failure.value.message  # the installer's own explanation is included
    assert list((tmp_path / "envs").iterdir()) == []


def test_a_build_abandoned_by_a_dead_process_is_cleaned_up(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    envs = tmp_path / "envs"
    abandoned = envs / ".0123456789abcdef0123.staging-x1y2"
    in_progress = envs / ".fedcba98765432100123.staging-a1b2"
    for staging, pid in ((abandoned, dead.pid), (in_progress, os.getpid())):
        (staging / "bin").mkdir(parents=True)
        (staging / ".truss-builder-pid").write_text(str(pid))
    built = ensure_environment(spec(), tmp_path, environ=os.environ)
    assert not abandoned.exists()
    assert in_progress.exists(), "a build whose process is alive was removed"
    assert not (built.path / ".truss-builder-pid").exists()


def test_an_environment_whose_python_disappeared_is_rebuilt(tmp_path: Path) -> None:
    built = ensure_environment(spec(), tmp_path, environ=os.environ)
    built.python.unlink()
    built.python.symlink_to(tmp_path / "uninstalled-python")
    rebuilt = ensure_environment(spec(), tmp_path, environ=os.environ)
    assert rebuilt.created and rebuilt.path == built.path
    assert rebuilt.python.exists()


def test_pip_is_the_fallback_installer(tmp_path: Path) -> None:
    with_pip = spec(server_requirements=("PyYAML>=6",))
    environment = ensure_environment(with_pip, tmp_path, environ=os.environ, installer="pip")
    assert environment.created
    out = subprocess.run(
        [str(environment.python), "-c", "import yaml, sys; print(yaml.safe_load('a: 1'), sys.prefix)"],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.split() == ["{'a':", "1}", str(environment.path)]


def test_constraints_from_the_model_apply_to_the_install(tmp_path: Path) -> None:
    constrained = spec(requirements=("PyYAML",), constraints=("PyYAML==6.0.1",))
    environment = ensure_environment(constrained, tmp_path, environ=os.environ)
    out = subprocess.run(
        [str(environment.python), "-c", "import yaml; print(yaml.__version__)"],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.stdout.strip() == "6.0.1", out.stderr
