"""The replica-side code, as a self-contained tree that a replica puts on its PYTHONPATH.

A replica (a local process or a container) must not see the CLI's own environment: it runs
in its own Python with its own packages. It gets a copy of exactly the modules it needs:
`truss_cli/__init__.py`, `truss_cli/server/`, and `truss_cli/sync/` (the tree manifest, so
a replica can tell which tree it serves). Not `truss_cli/config.py`: the server reads the
replica config written from it (`server/replica_config.py`), so it needs no pydantic 2. The image build and `truss run` both call
`write_server_bundle`, so they serve the same code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from truss_cli.paths import atomic_directory
from truss_cli.resources import package_dir
from truss_cli.tree import TreeFile, TreeHasher

# Relative to the truss_cli package directory.
_BUNDLED_FILES = ("__init__.py",)
_BUNDLED_DIRS = ("server", "sync")
SERVER_REQUIREMENTS = "server/requirements.txt"


def bundle_files() -> list[tuple[Path, str]]:
    """(source path, path inside the bundle) for every file a replica needs, sorted."""
    root = package_dir()
    files = [(root / name, f"truss_cli/{name}") for name in _BUNDLED_FILES]
    for directory in _BUNDLED_DIRS:
        for path in sorted((root / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".txt"):
                files.append((path, f"truss_cli/{path.relative_to(root).as_posix()}"))
    return sorted(files, key=lambda item: item[1])


def bundle_hash() -> str:
    """Changes whenever any replica-side file changes (used as a cache key)."""
    files = []
    for source, name in bundle_files():
        info = source.stat()
        # Copies are written without their mode bits, so the executable bit is not content.
        files.append(TreeFile(name, source, info.st_size, info.st_mtime_ns, executable=False))
    return TreeHasher().hash_files(files)


def server_requirements() -> list[str]:
    """What a replica's environment gets besides the model's requirements, one per entry:
    the server's own packages and the ones Truss's image gives models (requirements.txt)."""
    text = (package_dir() / SERVER_REQUIREMENTS).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def write_server_bundle(destination: Path) -> Path:
    """Copy the replica-side code into `destination` (which then goes on PYTHONPATH)."""
    for source, name in bundle_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return destination


def cached_server_bundle(cache_root: Path) -> Path:
    """A bundle under `cache_root`, keyed by content; written once, atomically."""
    final = cache_root / "server" / bundle_hash()[:16]
    if final.is_dir():
        return final
    try:
        with atomic_directory(final) as staging:
            write_server_bundle(staging)
    except OSError:
        if not final.is_dir():
            raise
        # Another process won the race with identical content.
    return final
