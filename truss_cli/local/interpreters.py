"""Finding an installed Python for the version a config.yaml asks for.

Candidates come from `pythonX.Y` on PATH, pyenv's `versions/X.Y.*` and the Python running
truss itself. Each candidate is run once to learn its exact version: a pyenv shim or a
dangling symlink looks like a Python on disk but may not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from truss_cli.config import SUPPORTED_PYTHON_MINORS

# The model server runs on these (config.yaml's python_version choices); other minors are
# never picked, even as the nearest.
SUPPORTED_MINORS = tuple(minor for _, minor in SUPPORTED_PYTHON_MINORS)

_PROBE = "import sys; print(sys.executable); print('.'.join(map(str, sys.version_info[:3])))"


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int, int]

    @property
    def minor(self) -> tuple[int, int]:
        return self.version[0], self.version[1]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(frozen=True)
class Selection:
    interpreter: Interpreter
    wanted: tuple[int, int]

    @property
    def exact(self) -> bool:
        return self.interpreter.minor == self.wanted

    def warning(self) -> Optional[str]:
        if self.exact:
            return None
        wanted = f"{self.wanted[0]}.{self.wanted[1]}"
        return (
            f"config.yaml asks for Python {wanted}, which is not installed; using Python "
            f"{self.interpreter.version_text} ({self.interpreter.path}) instead. "
            "Docker gives the exact version (truss image run)."
        )


class NoInterpreterError(Exception):
    pass


def probe(path: Path | str) -> Optional[Interpreter]:
    """Run `path` and return what it really is, or None if it does not start."""
    try:
        result = subprocess.run(
            [str(path), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2:
        return None
    try:
        major, minor, micro = (int(part) for part in lines[1].split("."))
    except ValueError:
        return None
    return Interpreter(path=Path(lines[0]), version=(major, minor, micro))


def candidate_paths(minor: tuple[int, int], search_path: str, pyenv_root: Path) -> list[Path]:
    """Where a Python `minor` might live, most specific first, without running anything.

    `search_path` is a PATH value and `pyenv_root` pyenv's root: the caller's settings, never
    looked up here.
    """
    name = f"python{minor[0]}.{minor[1]}"
    found: list[Path] = []
    pyenv_versions = pyenv_root / "versions"
    if pyenv_versions.is_dir():
        # Highest patch release first: 3.11.10 sorts above 3.11.9.
        installs = sorted(
            pyenv_versions.glob(f"{minor[0]}.{minor[1]}.*"),
            key=lambda path: _version_key(path.name),
            reverse=True,
        )
        found.extend(install / "bin" / "python" for install in installs)
    for directory in search_path.split(os.pathsep):
        if directory:
            found.append(Path(directory) / name)
    return [path for path in _unique(found) if os.access(path, os.X_OK)]


def find_interpreter(minor: tuple[int, int], search_path: str, pyenv_root: Path) -> Optional[Interpreter]:
    for path in candidate_paths(minor, search_path, pyenv_root):
        interpreter = probe(path)
        if interpreter is not None and interpreter.minor == minor:
            return interpreter
    return None


def select_interpreter(
    wanted: tuple[int, int],
    search_path: str,
    pyenv_root: Path,
    include_current: bool = True,
) -> Selection:
    """The Python `wanted` asks for, else the nearest supported one installed.

    On a tie the newer one wins: code written for 3.N more often runs on 3.N+1 (new syntax
    and stdlib are additive) than on 3.N-1.
    """
    exact = find_interpreter(wanted, search_path, pyenv_root)
    if exact is not None:
        return Selection(exact, wanted)
    current = _current_interpreter() if include_current else None
    if current is not None and current.minor == wanted:
        return Selection(current, wanted)
    by_distance = sorted(
        ((3, minor) for minor in SUPPORTED_MINORS if (3, minor) != wanted),
        key=lambda candidate: (abs(candidate[1] - wanted[1]), -candidate[1]),
    )
    for minor in by_distance:
        if current is not None and current.minor == minor:
            return Selection(current, wanted)
        found = find_interpreter(minor, search_path, pyenv_root)
        if found is not None:
            return Selection(found, wanted)
    raise NoInterpreterError(
        f"no Python {', '.join(f'3.{minor}' for minor in SUPPORTED_MINORS)} found "
        "on PATH (as pythonX.Y) or in pyenv"
    )


def _current_interpreter() -> Optional[Interpreter]:
    major, minor, micro = sys.version_info[:3]
    if major != 3 or minor not in SUPPORTED_MINORS:
        return None
    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    return Interpreter(path=base, version=(major, minor, micro))


def _version_key(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else -1)
    return tuple(parts)


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    result = []
    for path in paths:
        if str(path) not in seen:
            seen.add(str(path))
            result.append(path)
    return result
