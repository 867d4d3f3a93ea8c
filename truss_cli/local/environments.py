"""Isolated virtual environments for local replicas, cached by what goes into them.

An environment lives in `<cache>/envs/<key>`, where the key hashes the exact Python, the
model's requirements (a requirements file's lines, its `-r` includes inlined) and the
server's own requirements. A second run with the same inputs reuses it and creates nothing.

It is built in a staging directory and renamed into place only when complete
(`paths.atomic_directory`), so an interrupted or failed build is never mistaken for a usable
environment. Replicas start `<env>/bin/python -m ...`, which works after the rename (only
console-script shebangs would point at the staging path, and nothing uses them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, Optional, Sequence

from truss_cli.config import TrussConfig
from truss_cli.errors import TrussError
from truss_cli.local.child_env import scrubbed
from truss_cli.local.interpreters import Interpreter
from truss_cli.paths import atomic_directory
from truss_cli.requirements import resolve_requirements
from truss_cli.server_bundle import server_requirements

Installer = Literal["uv", "pip"]
ProgressCallback = Callable[[str], None]

# Bumped when the layout or the way environments are built changes.
_KEY_FORMAT = "2"
# Inside a staging directory while it is being built: the builder's pid, so that a later
# run can tell an abandoned build (its process is gone) from one in progress.
_BUILDER_FILE = ".truss-builder-pid"
# Kept in the environment: what was installed into it, for whoever wonders.
REQUIREMENTS_RECORD = "truss-requirements.txt"
CONSTRAINTS_RECORD = "truss-constraints.txt"
_ERROR_TAIL_LINES = 25


@dataclass(frozen=True)
class EnvironmentSpec:
    interpreter: Interpreter
    requirements: Sequence[str] = ()  # requirement lines, as in a requirements file
    server_requirements: Sequence[str] = ()
    constraints: Sequence[str] = ()  # from the model's `-c` includes

    def key(self) -> str:
        material = {
            "format": _KEY_FORMAT,
            "python": self.interpreter.version_text,
            "python_path": str(self.interpreter.path),
            "requirements": sorted(_normalize(self.requirements)),
            "server_requirements": sorted(_normalize(self.server_requirements)),
            "constraints": sorted(_normalize(self.constraints)),
        }
        encoded = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:20]


def spec_for_model(model_dir: Path, config: TrussConfig, interpreter: Interpreter) -> EnvironmentSpec:
    """What the environment for this model directory must contain (model + server packages).

    The model's requirements are read as the image build reads them, so a requirement that
    an image could not install fails here too, before anything is built.
    """
    resolved = resolve_requirements(model_dir, config)
    return EnvironmentSpec(
        interpreter=interpreter,
        requirements=tuple(resolved.requirements),
        server_requirements=tuple(server_requirements()),
        constraints=tuple(resolved.constraints),
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
    environ: Mapping[str, str]
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
    *,
    environ: Mapping[str, str],
    on_progress: ProgressCallback = lambda step: None,
    installer: Optional[Installer] = None,
) -> Environment:
    """The environment for `spec`, built first if no complete one is cached.

    The installers run in `environ` (scrubbed of truss's own Python settings): proxies,
    index URLs and uv's cache come from it.
    """
    root = environments_root(cache_root)
    final = root / spec.key()
    if _is_usable(final):
        return Environment(final, created=False)
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(root)
    if final.exists():
        # A previous environment whose base Python has gone away.
        shutil.rmtree(final, ignore_errors=True)
    try:
        with atomic_directory(final) as staging:
            (staging / _BUILDER_FILE).write_text(str(os.getpid()))
            build = _Build(spec, staging, installer or _default_installer(), on_progress, environ)
            _create_venv(build)
            _install_requirements(build)
            (staging / _BUILDER_FILE).unlink()
    except OSError:
        # Another `truss run` finished the same environment first; use theirs.
        if not _is_usable(final):
            raise
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
    # The staging directory already holds the builder's pid file: keep it.
    if build.installer == "uv":
        command = [
            _require_uv(), "venv", str(build.staging), "--python", str(python.path),
            "--no-python-downloads", "--relocatable", "--allow-existing", "--quiet",
        ]
    else:
        command = [str(python.path), "-m", "venv", str(build.staging)]
    _run(build, command, "creating the virtual environment failed")


def _install_requirements(build: _Build) -> None:
    spec = build.spec
    lines = [*spec.server_requirements, *spec.requirements]
    if not lines:
        return
    # One file rather than arguments: lines may carry options (`--hash=...`, `--extra-index-url`).
    record = build.staging / REQUIREMENTS_RECORD
    record.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    arguments = ["-r", str(record)]
    if spec.constraints:
        constraints = build.staging / CONSTRAINTS_RECORD
        constraints.write_text("".join(f"{line}\n" for line in spec.constraints), encoding="utf-8")
        arguments += ["-c", str(constraints)]
    names = [_display_name(line) for line in lines if not line.startswith("-")]
    build.begin(f"Installing {', '.join(name for name in names if name)}")
    python = str(build.staging / "bin" / "python")
    if build.installer == "uv":
        command = [_require_uv(), "pip", "install", "--python", python, "--no-python-downloads", *arguments]
    else:
        command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *arguments]
    _run(build, command, "installing the requirements failed")


def _run(build: _Build, command: list[str], failure: str) -> None:
    """Run one build step; its output becomes progress lines, and the error on failure."""
    env = {**scrubbed(build.environ), "UV_PYTHON_DOWNLOADS": "never", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
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
    for path in root.glob(".*.staging-*"):
        try:
            pid_text = (path / _BUILDER_FILE).read_text().strip()
        except OSError:
            continue  # just created (no pid yet) or already gone
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
