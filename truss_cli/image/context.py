"""What goes into a model's image, and the build context that says it to Docker.

`plan_image` reads the model directory once (config, file set, content hash) and decides the
base image, the Python, and the Dockerfile. `write_build_context` lays the files out in one
directory per layer, so each `COPY` in the Dockerfile changes only when its own files do:
editing `model/model.py` leaves the base, system packages, requirements, data and server
layers cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jinja2
import yaml

from truss_cli.config import CONFIG_FILENAME, TrussConfig, load_config
from truss_cli.errors import TrussError
from truss_cli.resources import templates_dir
from truss_cli.server_bundle import bundle_hash, server_requirements, write_server_bundle
from truss_cli.tree import TreeFile, TreeHasher, list_files

BASE_IMAGE_ENV = "TRUSS_BASE_IMAGE"
DEFAULT_BASE_IMAGE = "python:{version}-slim"
SERVER_PORT = 8080
APP_DIR = "/app"
EXTERNAL_DIR = "/opt/truss/external"
# A fixed numeric id: COPY --chown needs no user lookup, and no base image is likely to use it.
USER_ID = 10001

LABEL_MODEL_NAME = "truss.model-name"
LABEL_CONTENT_HASH = "truss.content-hash"
LABEL_BUILD_KEY = "truss.build-key"

_INSTALL_SCRIPT = "image/install_python.sh"


@dataclass
class ImagePlan:
    model_dir: Path
    config: TrussConfig
    model_name: str
    base_image: str
    base_image_source: str  # where the base image came from, for messages
    python_executable: str  # empty: the install script finds python3 in the base image
    files: list[TreeFile]
    external_dirs: list[tuple[Path, list[TreeFile]]]
    content_hash: str
    user_requirements: str
    config_text: str
    dockerfile: str
    notes: list[str] = field(default_factory=list)

    @property
    def default_tag(self) -> str:
        return f"truss-{slug(self.model_name)}:{self.content_hash[:12]}"

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_MODEL_NAME: self.model_name, LABEL_CONTENT_HASH: self.content_hash}

    def build_key(self, base_image_id: str) -> str:
        """Changes whenever anything that ends up in the image changes, including the base."""
        digest = hashlib.sha256()
        parts = [
            self.dockerfile,
            self.content_hash,
            bundle_hash(),
            self.user_requirements,
            self.config_text,
            (templates_dir() / _INSTALL_SCRIPT).read_text(encoding="utf-8"),
            base_image_id,
        ]
        for text in parts:
            digest.update(text.encode() + b"\0")
        for _, files in self.external_dirs:
            digest.update(TreeHasher().hash_files(files).encode() + b"\0")
        return digest.hexdigest()


def slug(name: str) -> str:
    """A string Docker accepts as an image repository name."""
    text = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return text or "model"


def choose_base_image(config: TrussConfig, override: str | None) -> tuple[str, str, str]:
    """(image, python executable, where the choice came from).

    An override (flag, then TRUSS_BASE_IMAGE) wins over config.yaml: it describes what this
    machine can use. It also drops the config's python_executable_path, which belongs to the
    image it replaces.
    """
    if override:
        return override, "", "--base-image"
    from_env = os.environ.get(BASE_IMAGE_ENV, "").strip()
    if from_env:
        return from_env, "", BASE_IMAGE_ENV
    if config.base_image and config.base_image.image:
        return config.base_image.image, config.base_image.python_executable_path, "config.yaml base_image.image"
    return DEFAULT_BASE_IMAGE.format(version=config.python_version_dotted), "", "the default for python_version"


def plan_image(model_dir: Path | str, base_image: str | None = None) -> ImagePlan:
    model_dir = Path(model_dir).resolve()
    loaded = load_config(model_dir)
    config = loaded.config
    notes = list(loaded.warnings)
    image, python, source = choose_base_image(config, base_image)
    files = list_files(model_dir)
    external_dirs = [(path, list_files(path)) for path in _external_dirs(model_dir, config)]
    config_text, scrubbed = _config_without_secret_values(model_dir / CONFIG_FILENAME)
    if scrubbed:
        notes.append(
            f"config.yaml: secrets {', '.join(scrubbed)} have values in config.yaml; they are left out of the "
            "image (supply them at run time)"
        )
    plan = ImagePlan(
        model_dir=model_dir,
        config=config,
        model_name=config.model_name or model_dir.name,
        base_image=image,
        base_image_source=source,
        python_executable=python,
        files=files,
        external_dirs=external_dirs,
        content_hash=TreeHasher().hash_files(files),
        user_requirements=_user_requirements(model_dir, config),
        config_text=config_text,
        dockerfile="",
        notes=notes,
    )
    plan.dockerfile = render_dockerfile(plan)
    return plan


def render_dockerfile(plan: ImagePlan) -> str:
    config = plan.config
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters["shell_quote"] = shlex.quote
    environment.filters["docker_string"] = _docker_string
    environment.filters["exec_form"] = json.dumps
    external = [f"{EXTERNAL_DIR}/{index}" for index in range(len(plan.external_dirs))]
    return environment.get_template("Dockerfile.jinja").render(
        model_name=plan.model_name,
        base_image=plan.base_image,
        python_executable=plan.python_executable,
        python_version=config.python_version_dotted,
        system_packages=config.system_packages,
        has_data=any(_layer_of(item.relative_path, config) == "data" for item in plan.files),
        has_packages=any(_layer_of(item.relative_path, config) == "packages" for item in plan.files),
        data_dir=_posix(config.data_dir),
        packages_dir=_posix(config.bundled_packages_dir),
        external_dirs=external,
        environment_variables=config.environment_variables,
        build_commands=config.build_commands,
        app_dir=APP_DIR,
        user_id=USER_ID,
        port=SERVER_PORT,
        labels=plan.labels,
    )


def write_build_context(plan: ImagePlan, destination: Path | str, link: bool = False) -> Path:
    """Write the build context into `destination` (created; must be empty if it exists).

    Written into a staging directory first, so a failure leaves nothing half-written.
    `link=True` hard-links the model's files instead of copying them: free even for a large
    `data/`, for a context that lives only as long as one build.
    """
    destination = Path(destination).resolve()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise TrussError(f"{destination}: already exists and is not empty", hint="Choose a new output directory.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        _write_context(plan, staging, link)
        if destination.exists():
            destination.rmdir()
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def _write_context(plan: ImagePlan, root: Path, link: bool) -> None:
    config = plan.config
    for name in ("code", "data", "packages", "external", "requirements"):
        (root / name).mkdir()
    data_prefix = len(_posix(config.data_dir)) + 1
    packages_prefix = len(_posix(config.bundled_packages_dir)) + 1
    for item in plan.files:
        layer = _layer_of(item.relative_path, config)
        if layer == "config":
            continue
        relative = item.relative_path
        if layer == "data":
            relative = relative[data_prefix:]
        elif layer == "packages":
            relative = relative[packages_prefix:]
        _copy(item, root / layer / relative, link)
    for index, (_, files) in enumerate(plan.external_dirs):
        for item in files:
            _copy(item, root / "external" / str(index) / item.relative_path, link)
    write_server_bundle(root / "server")
    (root / "requirements" / "server.txt").write_text("\n".join(server_requirements()) + "\n")
    (root / "requirements" / "model.txt").write_text(plan.user_requirements)
    shutil.copyfile(templates_dir() / _INSTALL_SCRIPT, root / "install_python.sh")
    (root / CONFIG_FILENAME).write_text(plan.config_text, encoding="utf-8")
    (root / "Dockerfile").write_text(plan.dockerfile, encoding="utf-8")


def _layer_of(relative_path: str, config: TrussConfig) -> str:
    if relative_path == CONFIG_FILENAME:
        return "config"
    if relative_path.startswith(_posix(config.data_dir) + "/"):
        return "data"
    if relative_path.startswith(_posix(config.bundled_packages_dir) + "/"):
        return "packages"
    return "code"


def _copy(item: TreeFile, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(item.path.resolve(), target)
            return
        except OSError:  # another filesystem, or links not allowed
            pass
    shutil.copy2(item.path, target)


def _posix(relative: str) -> str:
    return PurePosixPath(relative.replace(os.sep, "/")).as_posix().strip("/")


def _external_dirs(model_dir: Path, config: TrussConfig) -> list[Path]:
    found = []
    for entry in config.external_package_dirs:
        path = (model_dir / entry).resolve()
        if not path.is_dir():
            raise TrussError(
                f"config.yaml: external_package_dirs: {entry!r} is not a directory (looked at {path})",
                exit_code=2,
            )
        found.append(path)
    return found


def _user_requirements(model_dir: Path, config: TrussConfig) -> str:
    if config.requirements_file:
        path = model_dir / config.requirements_file
        if not path.is_file():
            raise TrussError(
                f"config.yaml: requirements_file: {config.requirements_file!r} not found (looked at {path})",
                exit_code=2,
            )
        return path.read_text(encoding="utf-8")
    return "".join(f"{line}\n" for line in config.requirements)


def _config_without_secret_values(path: Path) -> tuple[str, list[str]]:
    """config.yaml as it goes into the image: secret *values* blanked, names kept.

    Truss configs list secret names with placeholder values, but a real value is sometimes
    pasted there. It must not reach a layer, so the image gets a copy with every value null.
    The file is left byte-identical when there is nothing to blank.
    """
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    secrets = raw.get("secrets") or {}
    with_values = sorted(name for name, value in secrets.items() if value not in (None, ""))
    if not with_values:
        return text, []
    raw["secrets"] = {name: None for name in secrets}
    header = "# Written by truss-cli: secret values removed; supply them at run time.\n"
    return header + yaml.safe_dump(raw, sort_keys=False), with_values


def _docker_string(value: str) -> str:
    """A double-quoted string for ENV/LABEL lines (JSON escaping is what Docker parses)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'
