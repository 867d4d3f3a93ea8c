"""Writing an `ImagePlan` out as a Docker build context.

The files are laid out in one directory per layer (`code/`, `data/`, `downloads/`,
`packages/`, `server/`, `requirements/`), so each `COPY` in the Dockerfile changes only when
its own files do: editing `model/model.py` leaves the base, system packages, requirements,
data and server layers cached. Inside those directories files are already where Truss's
layout puts them (`truss_cli.image.layout`): `code/model/` is the model module whatever it is
called, `packages/` holds the bundled packages and every external package dir merged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from truss_cli.config import CONFIG_FILENAME
from truss_cli.errors import UsageError
from truss_cli.image.layout import placement
from truss_cli.image.plan import INSTALL_SCRIPT, REPLICA_CONFIG_FILE, ImagePlan
from truss_cli.paths import atomic_directory
from truss_cli.resources import templates_dir
from truss_cli.server_bundle import server_requirements, write_server_bundle
from truss_cli.tree import TreeFile


def write_build_context(plan: ImagePlan, destination: Path | str, link: bool = False) -> Path:
    """Write the build context into `destination` (created; must be empty if it exists).

    Written into a staging directory first, so a failure leaves nothing half-written.
    `link=True` hard-links the model's files instead of copying them: free even for a large
    `data/`, for a context that lives only as long as one build.
    """
    destination = Path(destination).resolve()
    if destination == plan.model_dir or plan.model_dir in destination.parents:
        # The next plan would pick the context up as model files and bake it into code/.
        raise UsageError(
            f"{destination}: inside the model directory {plan.model_dir}",
            hint="write the build context outside the model directory",
        )
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise UsageError(f"{destination}: already exists and is not empty", hint="choose a new output directory")
    with atomic_directory(destination) as staging:
        _write_context(plan, staging, link)
    return destination


def _write_context(plan: ImagePlan, root: Path, link: bool) -> None:
    for name in ("code", "data", "downloads", "packages", "requirements"):
        (root / name).mkdir()
    if plan.custom_server_secrets_path and plan.config.docker_server and plan.config.docker_server.no_build:
        # Empty: COPY makes the custom server's secrets directory from it (a no_build image
        # may have no shell to RUN mkdir); the replica fills it when the container starts.
        (root / "secrets").mkdir()
    for item in plan.files:
        place = placement(item.relative_path, plan.config)
        if place is None or place[0] == "config":
            continue
        _copy(item, root / place[0] / place[1], link)
    # Merged, as Truss does; the plan refused names that two of them share.
    for external in plan.external_dirs:
        for item in external.files:
            _copy(item, root / "packages" / item.relative_path, link)
    for download in plan.external_data:
        _link_or_copy(download.content.path, root / "downloads" / download.local_data_path)
    write_server_bundle(root / "server")
    # A custom server's replica needs only the standard library: the image installs only the
    # custom server's own requirements (as Truss does).
    ours = [] if plan.config.docker_server is not None else server_requirements()
    (root / "requirements" / "server.txt").write_text("".join(f"{line}\n" for line in ours))
    (root / "requirements" / "model.txt").write_text(plan.user_requirements, encoding="utf-8")
    (root / "requirements" / "constraints.txt").write_text(plan.user_constraints, encoding="utf-8")
    shutil.copyfile(templates_dir() / INSTALL_SCRIPT, root / "install_python.sh")
    # The scrubbed copy (no secret values), not the model's own file.
    (root / CONFIG_FILENAME).write_text(plan.config_text, encoding="utf-8")
    (root / REPLICA_CONFIG_FILE).write_text(plan.replica_config_text, encoding="utf-8")
    (root / "Dockerfile").write_text(plan.dockerfile, encoding="utf-8")


def _copy(item: TreeFile, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if item.link_target is not None:
        # A directory link inside the model directory (list_files refuses any other): the
        # image gets the same relative link, and /app keeps the model directory's layout.
        os.symlink(item.link_target, target)
        return
    if link:
        _link_or_copy(item.path.resolve(), target)
    else:
        shutil.copy2(item.path, target)


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link is free even for a multi-GB download; the engine reads the context as files.
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, target)
