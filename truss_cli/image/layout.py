"""Truss's layout inside an image: where each file of a model directory lands.

Whatever the directories are called in the model directory, the image holds them where
Truss's image does, so `build_commands` and model code written for Truss find them:
`model_module_dir` at /app/model, `data_dir` (and `external_data`) at /app/data,
`bundled_packages_dir` and the contents of every `external_package_dirs` entry merged at
/packages, config.yaml at /app/config.yaml, working directory /app. Other files keep their
relative place under /app (Truss leaves them out; keeping them costs nothing and keeps a
model that reads a file beside config.yaml working). The config.yaml in the image says
`model_module_dir: model` and `data_dir: data`, and the replica config the server reads
names those and /packages (`replica_paths`), so the server finds everything there.

`truss run` keeps the model directory's own layout; `image_path` maps one to the other
(for a layer that later patches files of a running image).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import yaml

from truss_cli.config import CONFIG_FILENAME, TrussConfig, secret_has_value
from truss_cli.errors import UsageError
from truss_cli.tree import TreeFile

APP_DIR = "/app"
# Truss's names under /app, whatever the model directory calls them.
MODEL_DIR_IN_IMAGE = "model"
DATA_DIR_IN_IMAGE = "data"
PACKAGES_DIR = "/packages"


def placement(relative_path: str, config: TrussConfig) -> tuple[str, str] | None:
    """(build-context directory, path inside it) for a model file, or None when it stays out.

    The directory is a Dockerfile layer: `code/` goes to /app, `data/` to /app/data,
    `packages/` to /packages. A file that would land on Truss's /app/model or /app/data
    without being the model module or the data (a `model/` beside `model_module_dir: src`)
    stays out, as in Truss's image.
    """
    if relative_path == CONFIG_FILENAME:
        return "config", CONFIG_FILENAME
    inside = _inside(relative_path, posix(config.data_dir))
    if inside is not None:
        return "data", inside
    inside = _inside(relative_path, posix(config.bundled_packages_dir))
    if inside is not None:
        return "packages", inside
    inside = _inside(relative_path, _module_dir(config))
    if inside is not None:
        return "code", f"{MODEL_DIR_IN_IMAGE}/{inside}"
    if relative_path.split("/", 1)[0] in (MODEL_DIR_IN_IMAGE, DATA_DIR_IN_IMAGE):
        return None
    return "code", relative_path


def image_path(relative_path: str, config: TrussConfig) -> str | None:
    """Where a file of the model directory is inside the image (None: left out of it)."""
    place = placement(relative_path, config)
    if place is None:
        return None
    layer, inside = place
    if layer == "data":
        return f"{APP_DIR}/{DATA_DIR_IN_IMAGE}/{inside}"
    if layer == "packages":
        return f"{PACKAGES_DIR}/{inside}"
    return f"{APP_DIR}/{inside}"


def _inside(relative_path: str, directory: str) -> str | None:
    if directory and relative_path.startswith(directory + "/"):
        return relative_path[len(directory) + 1:]
    return None


def _module_dir(config: TrussConfig) -> str:
    # "." (model.py beside config.yaml) has no directory to move: those files stay at /app.
    module = posix(config.model_module_dir)
    return "" if module in ("", ".") else module


def replica_paths(config: TrussConfig) -> dict:
    """The model's directories as the server in the image finds them (`with_paths` keywords):
    the module at /app/model (relative to /app, so `model/model.py` imports as `model.model`),
    data at /app/data, and every package directory merged into /packages."""
    paths: dict = {"data_dir": DATA_DIR_IN_IMAGE, "bundled_packages_dir": PACKAGES_DIR, "external_package_dirs": ()}
    if _module_dir(config):
        paths["model_module_dir"] = MODEL_DIR_IN_IMAGE
    return paths


def posix(relative: str) -> str:
    return PurePosixPath(relative.replace(os.sep, "/")).as_posix().strip("/")


def check_packages_merge(
    model_dir: Path, config: TrussConfig, files: list[TreeFile], external: list[tuple[str, list[TreeFile]]]
) -> None:
    """Refuse two package sources that hold the same top-level name.

    In an image they are merged into /packages, where one would silently replace (or mix
    with) the other; locally each is its own sys.path entry and the first one wins. Refusing
    keeps both runs importing the same code.
    """
    owners: dict[str, str] = {}
    sources = [(posix(config.bundled_packages_dir), [
        place[1] for item in files if (place := placement(item.relative_path, config)) and place[0] == "packages"
    ])]
    sources += [(entry, [item.relative_path for item in listed]) for entry, listed in external]
    for source, paths in sources:
        for name in sorted({path.split("/", 1)[0] for path in paths}):
            if name in owners:
                raise UsageError(
                    f"{model_dir / CONFIG_FILENAME}: external_package_dirs: {source!r} and {owners[name]!r} both "
                    f"hold {name!r}; an image merges them into {PACKAGES_DIR}, where one would replace the other",
                    hint="rename one of them, or list it in that directory's .truss_ignore",
                )
            owners[name] = source


def left_out_notes(config: TrussConfig, files: list[TreeFile]) -> list[str]:
    left_out = sorted({item.relative_path.split("/", 1)[0] for item in files if placement(item.relative_path, config) is None})
    return [
        f"config.yaml: {name}/ is left out of the image: Truss's layout puts "
        f"{'model_module_dir' if name == MODEL_DIR_IN_IMAGE else 'data_dir'} "
        f"({posix(config.model_module_dir if name == MODEL_DIR_IN_IMAGE else config.data_dir)}/) at {APP_DIR}/{name}"
        for name in left_out
    ]


def config_for_image(path: Path, config: TrussConfig) -> tuple[str, list[str]]:
    """config.yaml as it goes into the image, and the secrets whose values were blanked.

    Two changes, each only when needed, so a usual config stays byte-identical:
    - secret *values* are blanked (names kept): Truss configs list secret names with
      placeholders, but a real value is sometimes pasted there and must not reach a layer;
    - `model_module_dir` and `data_dir` say `model` and `data`, where the image holds them.
    """
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    secrets = raw.get("secrets") or {}
    with_values = sorted(name for name, value in secrets.items() if secret_has_value(value))
    layout = {}
    if _module_dir(config) and _module_dir(config) != MODEL_DIR_IN_IMAGE:
        layout["model_module_dir"] = MODEL_DIR_IN_IMAGE
    if posix(config.data_dir) != DATA_DIR_IN_IMAGE:
        layout["data_dir"] = DATA_DIR_IN_IMAGE
    if not with_values and not layout:
        return text, []
    if with_values:
        raw["secrets"] = {name: None for name in secrets}
    raw.update(layout)
    header = "# Written by truss-cli for the image: secret values removed, directories as the image holds them.\n"
    return header + yaml.safe_dump(raw, sort_keys=False), with_values
