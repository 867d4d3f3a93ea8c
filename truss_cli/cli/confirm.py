"""One way to confirm an irreversible or disruptive action: ask on a terminal, `--yes` skips.

Without a terminal (a script, CI, a pipe) nobody can answer, and guessing "yes" would delete
things nobody agreed to delete: the command refuses and says to pass `--yes`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from truss_cli.cli import console
from truss_cli.errors import TrussError


def yes_option(what: str) -> Any:
    return typer.Option(
        False, "--yes", "-y",
        help=f"Do not ask for confirmation before {what} (needed when no terminal can answer, e.g. in scripts and CI).",
    )


def confirm(question: str, *, yes: bool, action: str, warning: str | None = None) -> None:
    """Return when the user agreed to `action` (or passed --yes); raise TrussError otherwise.

    `warning` (what the action will break) is printed before the question, and also with
    --yes, so a script's log says what happened.
    """
    if warning:
        console.warning(warning)
    if yes:
        return
    if not _stdin_is_terminal():
        raise TrussError(
            f"refusing to {action} without a confirmation: there is no terminal to ask on",
            hint="pass --yes to confirm it non-interactively",
        )
    if not typer.confirm(question, default=False, err=True):
        raise TrussError(f"not confirmed: did not {action}")


def _stdin_is_terminal() -> bool:
    stream = sys.stdin
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced by something without a terminal
        return False
