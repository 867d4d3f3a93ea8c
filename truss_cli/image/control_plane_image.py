"""An image of the control plane itself (`truss server image`), for running it in a cluster.

Built from the source tree this package runs from (a clone, installed or on PYTHONPATH): the
build context holds that tree's `pyproject.toml`, `README.md`, `truss_cli/` and `templates/`,
and a first build stage turns them into a wheel (the build backend comes from PyPI); the second
installs the package's declared dependencies, then the wheel, into a virtual environment on
the base image's own Python. So a fresh clone needs nothing but an engine that reaches PyPI.

The image runs as uid 10001 (the manifests' `runAsUser`), `truss` is on its PATH, and it
holds no docker CLI: the control plane talks to an engine with the Docker SDK, through
`DOCKER_HOST`. Its data and cache directories exist and belong to that user, so it also runs
with nothing mounted (`docker run -p 8800:8800 IMAGE`), and read-only with volumes over them.

An identical build is reused: the image is labelled with a key of the base image's id and
every byte of the context, as model images are.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from truss_cli import __version__
from truss_cli.config import DEFAULT_PYTHON_VERSION
from truss_cli.errors import TrussError
from truss_cli.image.build import BuildListener, BuildResult, check_tag, split_tag, stream_build
from truss_cli.image.engine import find_built_image, image_id
from truss_cli.image.plan import DEFAULT_BASE_IMAGE, USER_ID
from truss_cli.resources import package_dir, render_template, templates_dir
from truss_cli.settings import BASE_IMAGE_ENV, Settings

REPOSITORY = "truss-cli"
PORT = 8800
# Where the control plane keeps its state; `truss server manifests` mounts its volumes there.
DATA_DIR = "/var/lib/truss-cli"
CACHE_DIR = "/var/cache/truss-cli"
COMMAND = ["truss", "server", "start", "--foreground", "--host", "0.0.0.0", "--port", str(PORT), "--data-dir", DATA_DIR]
_TEMPLATE_DIR = "control_plane"
_HELPER = "requirements_from_wheel.py"  # run in the first stage: the wheel's dependencies
_PROJECT_NAME = re.compile(r'^name\s*=\s*"truss-cli"\s*$', re.MULTILINE)
# What the wheel is built from (pyproject.toml's hatch settings name the rest).
_SOURCE_FILES = ("pyproject.toml", "README.md")
_SOURCE_DIRS = ("truss_cli", "templates")
_SKIPPED = ("__pycache__", ".pytest_cache", ".mypy_cache")


@dataclass(frozen=True)
class ControlPlaneBase:
    """The base image and where the choice came from (for messages, as an ImagePlan says)."""

    base_image: str
    base_image_source: str


def choose_base(override: str | None, settings: Settings) -> ControlPlaneBase:
    """`--base-image`, else TRUSS_BASE_IMAGE, else the default model images use (python:3.X-slim
    of config.yaml's default python_version)."""
    if override:
        return ControlPlaneBase(override, "--base-image")
    if settings.base_image:
        return ControlPlaneBase(settings.base_image, BASE_IMAGE_ENV)
    version = f"3.{DEFAULT_PYTHON_VERSION[3:]}"
    return ControlPlaneBase(DEFAULT_BASE_IMAGE.format(version=version), "the default of model images")


def source_tree() -> Path:
    """The source checkout this package runs from; a clear error for an installed wheel, which
    lacks the pyproject.toml a wheel is built from."""
    root = package_dir().parent
    try:
        ours = _PROJECT_NAME.search((root / "pyproject.toml").read_text(encoding="utf-8")) is not None
    except OSError:
        ours = False
    if not ours:
        raise TrussError(
            f"truss server image builds from a source checkout of truss-cli, and this one runs from {package_dir()} "
            "(installed, with no pyproject.toml of truss-cli beside it)",
            hint="clone the repository and run it from there: `pip install -e .` in the clone, then `truss server image`",
        )
    return root


def write_context(source: Path, base: ControlPlaneBase, out: Path, python: str = "python3") -> str:
    """Write the build context into the empty directory `out`; its build key (without the base
    image's id, which `build_control_plane_image` adds)."""
    digest = hashlib.sha256()
    target = out / "source"
    for name in _SOURCE_FILES:
        _copy(source / name, target / name, digest, name)
    for directory in _SOURCE_DIRS:
        for path in sorted((source / directory).rglob("*")):
            relative = path.relative_to(source)
            if any(part in _SKIPPED for part in relative.parts) or path.suffix == ".pyc" or not path.is_file():
                continue
            _copy(path, target / relative, digest, relative.as_posix())
    helper = (Path(templates_dir()) / _TEMPLATE_DIR / _HELPER).read_text(encoding="utf-8")
    (out / _HELPER).write_text(helper, encoding="utf-8")
    dockerfile = render_template(
        f"{_TEMPLATE_DIR}/Dockerfile.jinja", version=__version__, base_image=base.base_image, python=python, user_id=USER_ID,
        data_dir=DATA_DIR, cache_dir=CACHE_DIR, port=PORT, command=COMMAND,
        labels={"org.opencontainers.image.title": "truss-cli control plane",
                "org.opencontainers.image.version": __version__},
    )
    (out / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    for part in (helper, dockerfile):
        digest.update(part.encode())
    return digest.hexdigest()


def build_control_plane_image(
    client: docker.APIClient,
    settings: Settings,
    base: ControlPlaneBase,
    tag: str | None = None,
    no_cache: bool = False,
    listener: BuildListener | None = None,
) -> BuildResult:
    """Build (or reuse) the control plane's image; tagged `tag`, default `truss-cli:VERSION-KEY`."""
    listener = listener or BuildListener()
    if tag is not None:
        check_tag(tag)
    source = source_tree()
    staging_root = settings.cache_dir / "build"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="control-plane-", dir=staging_root))
    try:
        context = staging / "context"
        context.mkdir()
        base_id = image_id(client, base.base_image)
        key = hashlib.sha256(f"{write_context(source, base, context)}\n{base_id or base.base_image}".encode()).hexdigest()
        tag = tag or f"{REPOSITORY}:{__version__}-{key[:12]}"
        existing = None if no_cache else find_built_image(client, key)
        if existing is not None:
            client.tag(existing, *split_tag(tag))
            return BuildResult(existing, tag, reused=True, build_key=key)
        if base_id is None:
            listener.on_note(f"Base image {base.base_image} is not on this machine; Docker will try to pull it.")
        return stream_build(client, base, context, tag, key, no_cache, listener, base_is_local=base_id is not None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy(path: Path, destination: Path, digest: "hashlib._Hash", name: str) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, destination)
    mode = os.stat(path).st_mode & 0o111
    digest.update(f"{name}\0{1 if mode else 0}\0".encode())
    digest.update(hashlib.sha256(path.read_bytes()).digest())
