"""Whether a change between two trees of a development deployment can be patched into its
running replica, or needs a rebuild (docs/live-reload.md): decided by diffing the trees,
never by trusting what the client says it changed."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Callable, Optional

from truss_cli.config import CONFIG_FILENAME, ConfigError, TrussConfig, parse_config
from truss_cli.sync.manifest import Manifest

# config.yaml keys whose change the replica cannot take in place: they shape the
# environment or image (requirements are installed at build time in this first cut).
REBUILD_KEYS = (
    "python_version", "base_image", "resources", "system_packages", "docker_server", "build_commands",
    "external_package_dirs", "requirements", "requirements_file", "external_data", "build",
)  # fmt: skip


def rebuild_reason(
    old: Manifest, new: Manifest, config_of: Callable[[Manifest], TrussConfig]
) -> Optional[str]:
    """Why the change old -> new needs a rebuild (None: it can be patched). `config_of`
    reads a tree's config.yaml (only called when config.yaml or a requirements file changed)."""
    changed = {path for path in set(old) | set(new) if old.get(path) != new.get(path)}
    if not changed:
        return None
    old_config = config_of(old)
    requirements_file = old_config.requirements_file
    if requirements_file and _normal(requirements_file) in changed:
        return f"{_normal(requirements_file)} changed (requirements are installed by a build)"
    if CONFIG_FILENAME not in changed:
        return None
    new_config = config_of(new)
    before, after = _dump(old_config), _dump(new_config)
    for key in REBUILD_KEYS:
        if before.get(key) != after.get(key):
            return f"config.yaml: {key} changed"
    return None


def config_loader(read_blob: Callable[[str], bytes], cache: dict[str, TrussConfig]) -> Callable[[Manifest], TrussConfig]:
    """`config_of` for `rebuild_reason`: a tree's config, parsed from its config.yaml blob.

    A config depends on config.yaml's text alone (`load_config` reads nothing else), so it is
    parsed once per distinct content (`cache`, by digest) and never needs the tree
    materialised: a save that leaves config.yaml alone costs a dict lookup here.
    """

    def config_of(manifest: Manifest) -> TrussConfig:
        entry = manifest.get(CONFIG_FILENAME)
        if entry is None:
            raise ConfigError(f"{CONFIG_FILENAME}: not in the tree; a model directory needs one")
        config = cache.get(entry.sha256)
        if config is None:
            config = parse_config(read_blob(entry.sha256).decode("utf-8"), CONFIG_FILENAME).config
            cache[entry.sha256] = config
        return config

    return config_of


def _dump(config: TrussConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def _normal(path: str) -> str:
    return PurePosixPath(path).as_posix()  # "./requirements.txt" -> "requirements.txt"
