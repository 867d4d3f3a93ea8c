"""Isolated virtual environments for local replicas, cached by what goes into them.

An environment lives in `<cache>/envs/<key>`, where the key hashes the exact Python, the
model's requirements (including a requirements file's content) and the server's own
requirements. A second run with the same inputs reuses it and creates nothing.

It is built in a staging directory and renamed into place only when complete, so an
interrupted or failed build is never mistaken for a usable environment. Replicas start
`<env>/bin/python -m ...`, which works after the rename (only console-script shebangs
would point at the staging path, and nothing uses them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from truss_cli.config import CONFIG_FILENAME, TrussConfig
from truss_cli.errors import TrussError, UsageError
from truss_cli.local.interpreters import Interpreter
from truss_cli.server_bundle import server_requirements

Installer = Literal["uv", "pip"]
ProgressCallback = Callable[[str], None]

# Bumped when the layout or the way environments are built changes.
_KEY_FORMAT = "1"
_STAGING_PREFIX = ".staging-"
_ERROR_TAIL_LINES = 25


@dataclass(frozen=True)
class EnvironmentSpec:
    interpreter: Interpreter
    requirements: Sequence[str] = ()
    requirements_file: Optional[Path] = None
    server_requirements: Sequence[str] = ()
    working_dir: Optional[Path] = None  # relative paths in requirements resolve from here

    def key(self) -> str:
        requirements_text = None
        if self.requirements_file is not None:
            requirements_text = self.requirements_file.read_text(encoding="utf-8")
        material = {
            "format": _KEY_FORMAT,
            "python": self.interpreter.version_text,
            "python_path": str(self.interpreter.path),
            "requirements": sorted(_normalize(self.requirements)),
            "requirements_file": requirements_text,
            "server_requirements": sorted(_normalize(self.server_requirements)),
        }
        encoded = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:20]


def spec_for_model(model_dir: Path, config: TrussConfig, interpreter: Interpreter) -> EnvironmentSpec:
    """What the environment for this model directory must contain (model + server packages)."""
    requirements_file = None
    if config.requirements_file:
        requirements_file = (model_dir / config.requirements_file).resolve()
        if not requirements_file.is_file():
            raise UsageError(
                f"{model_dir / CONFIG_FILENAME}: requirements_file: {config.requirements_file} not found "
                f"(looked for {requirements_file})"
            )
    return EnvironmentSpec(
        interpreter=interpreter,
        requirements=tuple(config.requirements),
        requirements_file=requirements_file,
        server_requirements=tuple(server_requirements()),
        working_dir=model_dir,
    )


@dataclass(frozen=True)
class Environment:
    path: Path
    created: bool

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


@dataclass
class _Build:
    spec: EnvironmentSpec
    staging: Path
    installer: Installer
    on_progress: ProgressCallback
    log: list[str] = field(default_factory=list)
    step: str = ""

    def begin(self, step: str) -> None:
        self.step = step
        self.on_progress(step)


def environments_root(cache_root: Path) -> Path:
    return cache_root / "envs"


def ensure_environment(
    spec: EnvironmentSpec,
    cache_root: Path,
    on_progress: ProgressCallback = lambda step: None,
    installer: Optional[Installer] = None,
) -> Environment:
    """The environment for `spec`, built first if no complete one is cached."""
    root = environments_root(cache_root)
    final = root / spec.key()
    if _is_usable(final):
        return Environment(final, created=False)
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(root)
    if final.exists():
        # A previous environment whose base Python has gone away.
        shutil.rmtree(final, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=root))
    build = _Build(spec, staging, installer or _default_installer(), on_progress)
    try:
        _create_venv(build)
        _install_requirements(build)
        try:
            os.rename(staging, final)
        except OSError:
            # Another `truss run` finished the same environment first; use theirs.
            if not _is_usable(final):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Environment(final, created=True)


def _is_usable(path: Path) -> bool:
    # `exists()` follows the symlink: False when the base interpreter was uninstalled.
    return (path / "bin" / "python").exists()


def _default_installer() -> Installer:
    return "uv" if _uv_binary() is not None else "pip"


def _uv_binary() -> Optional[str]:
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


def _create_venv(build: _Build) -> None:
    python = build.spec.interpreter
    build.begin(f"Creating a virtual environment with Python {python.version_text}")
    if build.installer == "uv":
        command = [
            _require_uv(), "venv", str(build.staging), "--python", str(python.path),
            "--no-python-downloads", "--relocatable", "--quiet",
        ]
    else:
        command = [str(python.path), "-m", "venv", "--clear", str(build.staging)]
    _run(build, command, "creating the virtual environment failed")


def _install_requirements(build: _Build) -> None:
    spec = build.spec
    packages = [*spec.server_requirements, *spec.requirements]
    arguments = list(packages)
    if spec.requirements_file is not None:
        arguments += ["-r", str(spec.requirements_file)]
    if not arguments:
        return
    names = ", ".join(_display_name(item) for item in packages)
    if spec.requirements_file is not None:
        names = f"{names}, {spec.requirements_file.name}" if names else spec.requirements_file.name
    build.begin(f"Installing {names}")
    python = str(build.staging / "bin" / "python")
    if build.installer == "uv":
        command = [_require_uv(), "pip", "install", "--python", python, "--no-python-downloads", *arguments]
    else:
        command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *arguments]
    _run(build, command, "installing the requirements failed")


def _run(build: _Build, command: list[str], failure: str) -> None:
    """Run one build step; its output becomes progress lines, and the error on failure."""
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", PYTHONUNBUFFERED="1")
    for variable in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "UV_PYTHON"):
        env.pop(variable, None)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        cwd=build.spec.working_dir,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                build.log.append(line)
                build.on_progress(f"{build.step}: {line}")
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    if code != 0:
        tail = "\n".join(build.log[-_ERROR_TAIL_LINES:])
        raise TrussError(
            f"{failure} (exit code {code}):\n{tail}",
            hint="check the requirements in config.yaml; nothing was cached, the next run starts afresh",
        )


def _require_uv() -> str:
    binary = _uv_binary()
    if binary is None:
        raise TrussError("uv is not installed", hint="pip install uv, or let truss fall back to pip")
    return binary


def _remove_abandoned_staging(root: Path) -> None:
    """Delete staging directories whose builder process is gone (killed mid-build)."""
    for path in root.glob(f"{_STAGING_PREFIX}*"):
        pid_text = path.name[len(_STAGING_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _normalize(requirements: Sequence[str]) -> list[str]:
    return [" ".join(item.split()) for item in requirements if item.strip()]


def _display_name(requirement: str) -> str:
    for separator in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " @", "@"):
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip()
