"""`truss run` (not written yet)."""

import typer


def run() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
