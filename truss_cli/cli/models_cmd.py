"""`truss models list` and `truss deployments list`: what a remote runs."""

from __future__ import annotations

from typing import Optional

import typer

from truss_cli.cli import connect, console
from truss_cli.cli.help import Command, Group

models_app = typer.Typer(cls=Group, help="The models on a remote.", no_args_is_help=True)
deployments_app = typer.Typer(cls=Group, help="The deployments of a model on a remote.", no_args_is_help=True)


@models_app.command("list", cls=Command)
def list_models(remote: Optional[str] = connect.remote_option(), output: console.OutputFormat = console.output_option()) -> None:
    """List the remote's models."""
    with connect.api(remote) as api:
        models = api.models()
    lines = [f"{m['name']}  {m['id']}  {m.get('deployments_count', 0)} deployments  production {m.get('production_deployment_id') or '-'}" for m in models]
    console.result(output, "\n".join(lines) or "No models yet. Push one with: truss push DIR", {"models": models})


@deployments_app.command("list", cls=Command)
def list_deployments(
    model: str = typer.Option(..., "--model", metavar="NAME_OR_ID", help="The model whose deployments to list."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """List a model's deployments with their status."""
    with connect.api(remote) as api:
        deployments = api.deployments(model)
    lines = []
    for d in deployments:
        role = "production" if d.get("is_production") else ("development" if d.get("is_development") else "")
        detail = f"  ({d['status_detail']})" if d.get("status_detail") else ""
        lines.append(f"{d['name']}  {d['id']}  {d['status']}{detail}  {role}  replicas {d.get('active_replica_count', 0)}".rstrip())
    console.result(output, "\n".join(lines) or f"Model {model} has no deployments.", {"deployments": deployments})
