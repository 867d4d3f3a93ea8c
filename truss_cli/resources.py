"""Where the files shipped beside the code live: `templates/`, and the replica-side sources."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """`templates/` from a wheel (copied into the package) or from a source checkout."""
    packaged = _PACKAGE_DIR / "_templates"
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / "templates"


def package_dir() -> Path:
    return _PACKAGE_DIR
