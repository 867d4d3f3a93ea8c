"""`truss logs`: a deployment's build and replica logs, from the remote."""

from __future__ import annotations

from typing import Any, Optional

import typer

from truss_cli.cli import connect, console


def logs(
    model: str = typer.Option(..., "--model", metavar="NAME_OR_ID", help="The model whose logs to show."),
    deployment: Optional[str] = typer.Option(
        None, "--deployment", metavar="REF",
        help="The deployment: id, name, production or development. Default: production, or the latest deployment "
             "while production serves nothing yet (a first push that failed)."),
    tail: bool = typer.Option(False, "--tail", help="Keep printing new lines as they come (Ctrl-C stops)."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DURATION", help="Only lines newer than this: seconds, 10m, 2h, or an ISO time."),
    kind: str = typer.Option("all", "--kind", metavar="build|replica|all", help="Which logs: the build's, the replicas', or both."),
    remote: Optional[str] = connect.remote_option(),
) -> None:
    """Print a deployment's logs (lines on stdout, each with its source)."""
    with connect.api(remote) as api:
        if deployment is None:
            deployment = _production_or_latest(api, model)
        with api.logs(model, deployment, since=_seconds(since), follow=tail, kind=kind) as lines:
            try:
                for line in lines:
                    console.out.print(f"{line.get('at', '')} [{line.get('source', '')}] {line.get('text', '')}", markup=False)
            except KeyboardInterrupt:
                return


def _production_or_latest(api: Any, model: str) -> str:
    """Production's id; while production serves nothing yet, the latest deployment's (the one
    whose failure the user wants to read), with a note on stderr saying which it is."""
    deployments = api.deployments(model)
    if not deployments or any(d.get("is_production") for d in deployments):
        return "production"  # none at all: the server's answer lists what exists
    published = [d for d in deployments if not d.get("is_development")] or deployments
    latest = published[-1]
    console.err.print(f"production serves nothing yet; showing deployment {latest['name']} ({latest['status']})",
                      markup=False)
    return str(latest["id"])


def _seconds(since: Optional[str]) -> Optional[str]:
    """`10m` / `2h` / `30s` / `1d` as seconds; anything else (seconds, ISO) passes as given."""
    if since is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if since[-1:] in units and since[:-1].isdigit():
        return str(int(since[:-1]) * units[since[-1]])
    return since
