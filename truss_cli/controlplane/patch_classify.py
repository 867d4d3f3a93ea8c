"""Whether a change between two trees of a development deployment can be patched into its
running replica, or needs a rebuild (docs/live-reload.md): decided by diffing the trees,
never by trusting what the client says it changed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable, Optional, Sequence

from truss_cli.config import CONFIG_FILENAME, ConfigError, TrussConfig, parse_config
from truss_cli.sync.manifest import Manifest

# config.yaml keys whose change the replica cannot take in place: they shape the image or
# the interpreter.
REBUILD_KEYS = (
    "python_version", "base_image", "resources", "docker_server", "build_commands",
    "external_package_dirs", "external_data", "build",
)  # fmt: skip
# Installed with apt: a runtime that can install into its running replica (docker) patches a
# change of it; any other rebuilds.
SYSTEM_PACKAGES_KEY = "system_packages"
# Keys (and the requirements file's content) that change only the packages installed: a
# runtime that builds environments patches them (a new environment, the replica switches its
# interpreter); any other rebuilds.
REQUIREMENTS_KEYS = ("requirements", "requirements_file")


@dataclass(frozen=True)
class Change:
    """What the change between two trees needs: `rebuild` says why a rebuild (None: none),
    `requirements` that the packages changed (patchable by a runtime that builds environments)."""

    rebuild: Optional[str] = None
    requirements: Optional[str] = None  # why: "requirements.txt changed", "config.yaml: requirements changed"
    system_packages: Optional[str] = None  # why: "config.yaml: system_packages changed"

    def rebuild_reason(self, environments: bool, system_packages: bool = False) -> Optional[str]:
        """Why a rebuild, for a runtime that can (`environments`) or cannot build environments,
        and can (`system_packages`, installing into its running replica) or cannot install
        system packages."""
        if self.rebuild:
            return self.rebuild
        if self.system_packages and not system_packages:
            return self.system_packages
        if environments or not self.requirements:
            return None
        return f"{self.requirements} (this runtime installs requirements by a build)"


def classify(old: Manifest, new: Manifest, config_of: Callable[[Manifest], TrussConfig]) -> Change:
    """What the change old -> new needs. `config_of` reads a tree's config.yaml (only called
    when config.yaml or a requirements file changed)."""
    changed = {path for path in set(old) | set(new) if old.get(path) != new.get(path)}
    if not changed:
        return Change()
    old_config = config_of(old)
    requirements_file = old_config.requirements_file
    requirements = None
    if requirements_file and _normal(requirements_file) in changed:
        requirements = f"{_normal(requirements_file)} changed"
    if CONFIG_FILENAME not in changed:
        return Change(requirements=requirements)
    new_config = config_of(new)
    before, after = _dump(old_config), _dump(new_config)
    system_packages = None
    if before.get(SYSTEM_PACKAGES_KEY) != after.get(SYSTEM_PACKAGES_KEY):
        system_packages = f"config.yaml: {SYSTEM_PACKAGES_KEY} changed"
    for key in REBUILD_KEYS:
        if before.get(key) != after.get(key):
            return Change(rebuild=f"config.yaml: {key} changed", requirements=requirements, system_packages=system_packages)
    for key in REQUIREMENTS_KEYS:
        if requirements is None and before.get(key) != after.get(key):
            requirements = f"config.yaml: {key} changed"
    new_file = new_config.requirements_file
    if requirements is None and new_file and new_file != requirements_file and _normal(new_file) in changed:
        requirements = f"{_normal(new_file)} changed"
    return Change(requirements=requirements, system_packages=system_packages)


def rebuild_reason(
    old: Manifest, new: Manifest, config_of: Callable[[Manifest], TrussConfig], environments: bool = False,
    system_packages: bool = False,
) -> Optional[str]:
    """Why the change old -> new needs a rebuild (None: it can be patched) on a runtime that
    can (`environments`) or cannot build environments for a requirements change, and can
    (`system_packages`) or cannot install system packages into its running replica."""
    return classify(old, new, config_of).rebuild_reason(environments, system_packages)


@dataclass(frozen=True)
class RequirementsDelta:
    """Requirement lines added, removed, and changed (the same project, another spec)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "old -> new"

    def to_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    def reason(self) -> str:
        parts = [f"+{line}" for line in self.added] + [f"-{line}" for line in self.removed] + self.changed
        return "requirements changed: " + (", ".join(parts) if parts else "options or order only")


def requirements_delta(old: Sequence[str], new: Sequence[str]) -> RequirementsDelta:
    """The difference between two lists of requirement lines, matched by project name
    (`six==1.16.0` -> `six==1.17.0` is a change, not a removal and an addition)."""
    before = {_project(line): line for line in old}
    after = {_project(line): line for line in new}
    added = [after[name] for name in after if name not in before]
    removed = [before[name] for name in before if name not in after]
    changed = [f"{before[name]} -> {after[name]}" for name in after if name in before and before[name] != after[name]]
    return RequirementsDelta(added, removed, changed)


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


def _project(line: str) -> str:
    """A requirement line's project name, normalised as PEP 503 does (the whole line when it
    names none, as an option or a URL)."""
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if match is None or line.lstrip().startswith("-"):
        return line
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()
