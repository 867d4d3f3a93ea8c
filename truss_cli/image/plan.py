"""What goes into a model's image: decided once, before anything is written or built.

`plan_image` reads the model directory (config, model code check, file set, content hash,
requirements) and decides the base image, the Python and the Dockerfile. The build key
derived from the plan names an image exactly: an unchanged directory finds its image by it.
`truss_cli.image.context` then writes the plan out as a build context; where each file
lands in the image is `truss_cli.image.layout`'s call (Truss's layout).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


from truss_cli.config import CONFIG_FILENAME, TrussConfig, load_config
from truss_cli.config_to_replica import replica_config_for, with_paths
from truss_cli.custom_server import custom_server_options
from truss_cli.errors import UsageError
from truss_cli.external_data import DownloadListener, ExternalFile, check_no_overlap, fetch_external_data
from truss_cli.image.labels import LABEL_CONTENT_HASH, LABEL_MODEL_NAME
from truss_cli.image.layout import (
    APP_DIR,
    DATA_DIR_IN_IMAGE,
    PACKAGES_DIR,
    check_packages_merge,
    config_for_image,
    left_out_notes,
    placement,
    replica_paths,
)
from truss_cli.model_check import check_model_dir
from truss_cli.requirements import resolve_requirements
from truss_cli.resources import render_template, templates_dir
from truss_cli.server.custom.options import CustomServerOptions
from truss_cli.server.custom.secret_files import SECRETS_PATH_IN_IMAGE
from truss_cli.server.protocol import DEFAULT_SERVER_PORT, REPLICA_CONFIG_ENV
from truss_cli.server_bundle import bundle_hash
from truss_cli.settings import BASE_IMAGE_ENV, Settings
from truss_cli.sync.manifest import Manifest
from truss_cli.tree import TreeFile, cached_manifest, list_files
from truss_cli.unsupported_keys import refuse_unsupported_keys

DEFAULT_BASE_IMAGE = "python:{version}-slim"
SERVER_PORT = DEFAULT_SERVER_PORT
# A fixed numeric id: COPY --chown needs no user lookup, and no base image is likely to use it.
USER_ID = 10001
INSTALL_SCRIPT = "image/install_python.sh"
SERVER_DIR = "/opt/truss/server"
VENV_PYTHON = "/opt/truss/venv/bin/python"
# What a no_build image leaves out, as Truss does: it is the base image as it is.
_IGNORED_BY_NO_BUILD = ("requirements", "requirements_file", "system_packages", "build_commands", "external_package_dirs")
# What the server reads instead of config.yaml (truss_cli.server.replica_config).
REPLICA_CONFIG_FILE = "replica.json"
REPLICA_CONFIG_PATH = f"/opt/truss/{REPLICA_CONFIG_FILE}"


@dataclass
class ExternalDir:
    """One of config.yaml's external_package_dirs, with its files and their hash."""

    path: Path
    files: list[TreeFile]
    manifest: Manifest

    @property
    def content_hash(self) -> str:
        return self.manifest.tree_hash()


@dataclass
class ImagePlan:
    model_dir: Path
    config: TrussConfig
    model_name: str
    base_image: str
    base_image_source: str  # where the base image came from, for messages
    python_executable: str  # empty: the install script finds python3 in the base image
    files: list[TreeFile]
    external_dirs: list[ExternalDir]
    manifest: Manifest  # of `files`: what the model directory holds, for the image and later a push
    user_requirements: str  # requirements/model.txt: self-contained, includes inlined
    user_constraints: str  # requirements/constraints.txt: from `-c` includes, usually empty
    config_text: str
    external_data: list[ExternalFile] = field(default_factory=list)  # downloaded, in the cache
    replica_config_text: str = ""  # the server's view of config_text, for REPLICA_CONFIG_PATH
    # A development image: the model code, packages and config.yaml belong to the server's
    # user (USER_ID) instead of root, so a live-reload layer can replace them in place.
    development: bool = False
    # A `docker_server` config: the image runs the custom server replica, which starts it.
    custom_server: Optional[CustomServerOptions] = None
    dockerfile: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        """The model directory's tree hash (`truss_cli.sync.manifest`)."""
        return self.manifest.tree_hash()

    @property
    def default_tag(self) -> str:
        # A development image holds the same files as the normal one but is a different image.
        suffix = "-dev" if self.development else ""
        return f"truss-{slug(self.model_name)}:{self.content_hash[:12]}{suffix}"

    @property
    def custom_server_secrets_path(self) -> Optional[str]:
        """Where a custom server finds its secrets in the image (/secrets, as in Truss): made
        empty by the build, filled by the replica when the container starts. None: no secrets."""
        if self.custom_server is None or not self.custom_server.secrets:
            return None
        return SECRETS_PATH_IN_IMAGE

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
            self.user_constraints,
            self.config_text,
            self.replica_config_text,
            (templates_dir() / INSTALL_SCRIPT).read_text(encoding="utf-8"),
            base_image_id,
            *(external.content_hash for external in self.external_dirs),
            *(f"{item.local_data_path}={item.content.sha256}" for item in self.external_data),
        ]
        for text in parts:
            digest.update(text.encode() + b"\0")
        return digest.hexdigest()


def slug(name: str) -> str:
    """A string Docker accepts as an image repository name."""
    text = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return text or "model"


def choose_base_image(config: TrussConfig, override: str | None, from_settings: str | None = None) -> tuple[str, str, str]:
    """(image, python executable, where the choice came from).

    An override (flag, then TRUSS_BASE_IMAGE) wins over config.yaml: it describes what this
    machine can use. It also drops the config's python_executable_path, which belongs to the
    image it replaces.
    """
    if override:
        return override, "", "--base-image"
    if from_settings:
        return from_settings, "", BASE_IMAGE_ENV
    if config.base_image and config.base_image.image:
        return config.base_image.image, config.base_image.python_executable_path, "config.yaml base_image.image"
    return DEFAULT_BASE_IMAGE.format(version=config.python_version_dotted), "", "the default for python_version"


def plan_image(
    model_dir: Path | str,
    settings: Settings,
    base_image: str | None = None,
    development: bool = False,
    on_download: DownloadListener = lambda progress: None,
) -> ImagePlan:
    """Read `model_dir` and decide its image. Raises ConfigError / UsageError on bad input.

    `development`: see `ImagePlan.development`. `external_data` is downloaded here, on this
    machine (into the cache; `on_download` hears the bytes), so the build needs no network.
    """
    model_dir = Path(model_dir).resolve()
    loaded = load_config(model_dir)
    config = loaded.config
    refuse_unsupported_keys(loaded, "image")
    check_model_dir(model_dir, config)
    _check_dockerfile_inputs(model_dir, config)
    notes = list(loaded.warnings)
    image, python, source = choose_base_image(config, base_image, settings.base_image)
    _check_base_image_name(image, source, model_dir)
    requirements = resolve_requirements(model_dir, config)
    files = list_files(model_dir)
    external_dirs = []
    for path in _external_dirs(model_dir, config):
        external_files = list_files(path)
        external_dirs.append(ExternalDir(path, external_files, cached_manifest(path, external_files, settings.cache_dir)))
    check_packages_merge(model_dir, config, files, [(entry, external.files) for entry, external in zip(config.external_package_dirs, external_dirs)])
    notes.extend(left_out_notes(config, files))
    config_text, scrubbed = config_for_image(model_dir / CONFIG_FILENAME, config)
    if scrubbed:
        notes.append(
            f"config.yaml: secrets {', '.join(scrubbed)} have values in config.yaml; they are left out of the "
            "image (supply them at run time)"
        )
    custom_server = custom_server_options(model_dir, config)
    if config.docker_server is not None and config.docker_server.no_build:
        notes.extend(_no_build_notes(config))
    check_no_overlap(
        config,
        (place[1] for item in files if (place := placement(item.relative_path, config)) and place[0] == "data"),
        model_dir / CONFIG_FILENAME,
    )
    downloads = fetch_external_data(config, settings.cache_dir, on_progress=on_download)
    plan = ImagePlan(
        model_dir=model_dir,
        config=config,
        model_name=config.model_name or model_dir.name,
        base_image=image,
        base_image_source=source,
        python_executable=python,
        files=files,
        external_dirs=external_dirs,
        manifest=cached_manifest(model_dir, files, settings.cache_dir),
        user_requirements=_lines(requirements.requirements),
        user_constraints=_lines(requirements.constraints),
        config_text=config_text,
        external_data=downloads,
        replica_config_text=_replica_config_text(config),
        development=development,
        custom_server=custom_server,
        notes=notes,
    )
    plan.dockerfile = _render_dockerfile(plan)
    return plan


def _render_dockerfile(plan: ImagePlan) -> str:
    config = plan.config
    layers = {place[0] for item in plan.files if (place := placement(item.relative_path, config))}
    if config.docker_server is not None and config.docker_server.no_build:
        return _render_no_build_dockerfile(plan, "data" in layers)
    return render_template(
        "Dockerfile.jinja",
        model_name=plan.model_name,
        base_image=plan.base_image,
        python_executable=plan.python_executable,
        python_version=config.python_version_dotted,
        # Truss accepts several packages in one entry (`- ffmpeg libsm6`); each is quoted alone.
        system_packages=[package for entry in config.system_packages for package in entry.split()],
        has_data="data" in layers,
        has_downloads=bool(plan.external_data),
        data_dir=f"{APP_DIR}/{DATA_DIR_IN_IMAGE}",
        packages_dir=PACKAGES_DIR,
        replica_config_file=REPLICA_CONFIG_FILE,
        replica_config_path=REPLICA_CONFIG_PATH,
        replica_config_env=REPLICA_CONFIG_ENV,
        environment_variables=config.environment_variables,
        build_commands=config.build_commands,
        app_dir=APP_DIR,
        user_id=USER_ID,
        development=plan.development,
        port=SERVER_PORT,
        labels=plan.labels,
        custom_server_command=_custom_server_command(plan, VENV_PYTHON),
        secrets_path=plan.custom_server_secrets_path,
        run_as_user_id=config.docker_server.run_as_user_id if config.docker_server else None,
    )


def _custom_server_command(plan: ImagePlan, python: str) -> Optional[list[str]]:
    """The image's CMD for a custom server: the replica in front of it, on the replica's port."""
    if plan.custom_server is None:
        return None
    secrets_path = plan.custom_server_secrets_path
    return [
        python, "-m", "truss_cli.server.custom", *plan.custom_server.to_arguments(),
        *(["--secrets-path", secrets_path] if secrets_path else []),
        "--host", "0.0.0.0", "--port", str(SERVER_PORT),
    ]


def _render_no_build_dockerfile(plan: ImagePlan, has_data: bool) -> str:
    """The base image as it is, plus the data directory and the (standard library only)
    custom server replica, run on the base image's own Python."""
    config = plan.config
    assert config.docker_server is not None
    command = _custom_server_command(plan, plan.python_executable or "python3")
    assert command is not None
    return render_template(
        "Dockerfile.no_build.jinja",
        model_name=plan.model_name,
        base_image=plan.base_image,
        has_data=has_data,
        has_downloads=bool(plan.external_data),
        data_dir=f"{APP_DIR}/{DATA_DIR_IN_IMAGE}",
        server_dir=SERVER_DIR,
        environment_variables=config.environment_variables,
        run_as_user_id=config.docker_server.run_as_user_id,
        secrets_path=plan.custom_server_secrets_path,
        port=SERVER_PORT,
        labels=plan.labels,
        # PYTHONPATH for the replica alone: it takes its bundle off again for the custom server.
        command=["env", f"PYTHONPATH={SERVER_DIR}", *command],
    )


def _no_build_notes(config: TrussConfig) -> list[str]:
    ignored = [key for key in _IGNORED_BY_NO_BUILD if getattr(config, key)]
    if not ignored:
        return []
    return [
        f"config.yaml: docker_server.no_build is true: {', '.join(ignored)} "
        f"{'is' if len(ignored) == 1 else 'are'} ignored (the image is the base image as it is, plus data/), as in Truss"
    ]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _check_dockerfile_inputs(model_dir: Path, config: TrussConfig) -> None:
    """Reject config values that would break (or inject lines into) the Dockerfile."""
    where = model_dir / CONFIG_FILENAME
    for name, value in config.environment_variables.items():
        if not _ENV_NAME.match(name):
            raise UsageError(
                f"{where}: environment_variables: {name!r} is not a valid variable name",
                hint="use letters, digits and underscores, starting with a letter or underscore",
            )
        if "\n" in value or "\r" in value:
            # An ENV line holds one line: Docker would keep a literal `\n`, unlike `truss run`.
            raise UsageError(
                f"{where}: environment_variables.{name}: the value spans several lines; multi-line values "
                "cannot be set in an image",
                hint=f"use a secret or a file in {config.data_dir}/",
            )
    # data_dir and bundled_packages_dir never reach the Dockerfile: their files are copied
    # from fixed build-context directories to Truss's fixed places.


def _check_base_image_name(image: str, source: str, model_dir: Path) -> None:
    if any(char.isspace() for char in image):
        where = f"{model_dir / CONFIG_FILENAME}: base_image.image" if source.startswith("config.yaml") else source
        raise UsageError(f"{where}: {image!r} is not a valid image name (it contains whitespace)")


def _replica_config_text(config: TrussConfig) -> str:
    """The replica config baked into the image: secret names without values, and the model's
    directories where the image holds them (Truss's layout, `image/layout.py`)."""
    replica = replica_config_for(config, secret_values=False)
    return with_paths(replica, **replica_paths(config)).to_json()


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def _external_dirs(model_dir: Path, config: TrussConfig) -> list[Path]:
    found = []
    for entry in config.external_package_dirs:
        path = (model_dir / entry).resolve()
        if not path.is_dir():
            raise UsageError(
                f"{model_dir / CONFIG_FILENAME}: external_package_dirs: {entry!r} is not a directory (looked at {path})"
            )
        found.append(path)
    return found


