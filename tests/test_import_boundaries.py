"""The arrows between truss_cli's rooms (pyproject.toml's [tool.importlinter] contracts)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_the_import_contracts_hold() -> None:
    # lint-imports reads the contracts from pyproject.toml in the working directory and
    # analyses the truss_cli found first on the path: this checkout's.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
