"""`truss predict` (not written yet)."""

import typer


def predict() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
