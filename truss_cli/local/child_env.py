"""The environment a child process of truss (a replica, an installer) starts from.

One list of what it must not inherit: variables that would point a child's Python at
truss's own interpreter, packages or virtual environment instead of its own.
"""

from __future__ import annotations

from typing import Mapping

PYTHON_LEAKS = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "UV_PYTHON")


def scrubbed(environ: Mapping[str, str], also: tuple[str, ...] = ()) -> dict[str, str]:
    """`environ` without PYTHON_LEAKS (and the names in `also`)."""
    dropped = set(PYTHON_LEAKS) | set(also)
    return {key: value for key, value in environ.items() if key not in dropped}
