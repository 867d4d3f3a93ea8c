"""Errors a user can act on. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations


class TrussError(Exception):
    """A failure with a message meant for the user, an optional hint, and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(TrussError):
    """Bad input from the user (arguments, files): exit code 2, like a config error."""

    exit_code = 2
