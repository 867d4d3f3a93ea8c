"""Where truss-cli keeps its state on this machine (caches, environments, settings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$TRUSS_CACHE_DIR`, else `$XDG_CACHE_HOME/truss-cli`, else `~/.cache/truss-cli`."""
    explicit = os.environ.get("TRUSS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "truss-cli"
