"""`truss init` (not written yet)."""

import typer


def init() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
