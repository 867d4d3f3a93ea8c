"""The CLI's two output streams: results on stdout, progress, logs and errors on stderr.

Keeping progress off stdout means `truss predict ... | jq` and `--output json` stay clean.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


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
        help="text for people; json prints one JSON object on stdout for scripts.",
        case_sensitive=False,
    )


def result(fmt: OutputFormat, text: str, data: dict[str, Any]) -> None:
    """Print a command's result on stdout: `text` for people, `data` as JSON for scripts."""
    if fmt is OutputFormat.json:
        out.print_json(json.dumps(data), indent=None)
    else:
        out.print(text)
