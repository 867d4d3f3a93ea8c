"""`truss image ...` (not written yet)."""

import typer

app = typer.Typer(help="Build and run Docker images of a model directory.", no_args_is_help=True)
