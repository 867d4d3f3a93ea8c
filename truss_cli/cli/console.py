"""The CLI's two output streams: results on stdout, progress, logs and errors on stderr.

Keeping progress off stdout means `truss predict ... | jq` and `--output json` stay clean.
"""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)
    if hint:
        err.print(f"[dim]Hint:[/] {hint}")


def warning(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {message}")
