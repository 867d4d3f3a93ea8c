"""Editing a text in the user's editor ($VISUAL, else $EDITOR), as `git commit` does."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping

from truss_cli.errors import TrussError, UsageError


def edit_text(text: str, environ: Mapping[str, str], file_name: str = "README.md") -> str | None:
    """Open the editor on a temporary file holding `text`; the edited text, or None when
    it was saved unchanged (or not saved), so nothing is sent for nothing."""
    command = (environ.get("VISUAL") or environ.get("EDITOR") or "").strip()
    if not command:
        raise UsageError(
            "no editor: set $VISUAL or $EDITOR (e.g. `export EDITOR=nano`)",
            hint="or write the file yourself and pass it with --set FILE",
        )
    # The variable may hold arguments (`code --wait`), as git and crontab allow.
    argv = shlex.split(command)
    with tempfile.TemporaryDirectory(prefix="truss-edit-") as scratch:
        path = Path(scratch) / file_name
        path.write_text(text, encoding="utf-8")
        try:
            code = subprocess.call([*argv, str(path)], env=dict(environ))
        except FileNotFoundError:
            raise TrussError(f"the editor {argv[0]!r} (from $VISUAL/$EDITOR) was not found") from None
        except PermissionError:
            raise TrussError(f"the editor {argv[0]!r} (from $VISUAL/$EDITOR) is not executable") from None
        if code != 0:
            raise TrussError(f"the editor {argv[0]!r} exited with status {code}: nothing was saved")
        edited = path.read_text(encoding="utf-8", errors="replace")
    return None if edited == text else edited
