"""The CLI's two output streams: results on stdout, progress, logs and errors on stderr.

Keeping progress off stdout means `truss predict ... | jq` and `--output json` stay clean.
Off a terminal nothing is wrapped: a log file or a pipe gets each message on one line, with
paths and words whole, whatever width rich would guess.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

class _Console(Console):
    """Wraps lines to the terminal's width on a terminal, and never anywhere else.

    Decided at each print, not once: the stream can change under it (tests capture it).
    """

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return self._always_soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._always_soft_wrap = value


out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False)


class _StderrLogSink:
    """The terminal as a log sink (`truss_cli.local.replica.LogSink`): bytes go to stderr as
    they come, after whatever rich wrote through the text layer."""

    def write(self, data: bytes) -> None:
        sys.stderr.flush()
        buffer = getattr(sys.stderr, "buffer", None)
        if buffer is not None:
            buffer.write(data)
        else:
            sys.stderr.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        getattr(sys.stderr, "buffer", sys.stderr).flush()


def log_sink() -> _StderrLogSink:
    return _StderrLogSink()


# Messages carry user text (paths, config values, server output): printed as plain text,
# never read as rich markup, so `[standard]` or `[/]` in them shows as typed.
def error(message: str, hint: str | None = None) -> None:
    err.print(Text.assemble(("Error: ", "bold red"), message))
    if hint:
        err.print(Text.assemble(("Hint: ", "dim"), hint))


def warning(message: str) -> None:
    err.print(Text.assemble(("Warning: ", "yellow"), message))


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def output_option() -> Any:
    return typer.Option(
        OutputFormat.text,
        "--output",
        "-o",
        metavar="text|json",
        help="text for people; json prints one JSON object on stdout for scripts.",
        case_sensitive=False,
    )


def result(fmt: OutputFormat, text: str, data: dict[str, Any]) -> None:
    """Print a command's result on stdout: `text` for people, `data` as JSON for scripts.

    `text` carries user text (names, descriptions): printed as typed, never as rich markup."""
    if fmt is OutputFormat.json:
        out.print_json(json.dumps(data), indent=None)
    else:
        out.print(text, markup=False)
