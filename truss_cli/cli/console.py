"""The CLI's two output streams: results on stdout, progress, logs and errors on stderr.

Keeping progress off stdout means `truss predict ... | jq` and `--output json` stay clean.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)
    if hint:
        err.print(f"[dim]Hint:[/] {hint}")


def warning(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {message}")


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
