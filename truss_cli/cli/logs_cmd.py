"""`truss logs`: a deployment's build and replica logs, from the remote."""

from __future__ import annotations

from typing import Optional

import typer

from truss_cli.cli import connect, console


def logs(
    model: str = typer.Option(..., "--model", metavar="NAME_OR_ID", help="The model whose logs to show."),
    deployment: str = typer.Option("production", "--deployment", metavar="REF", help="The deployment: id, name, production or development."),
    tail: bool = typer.Option(False, "--tail", help="Keep printing new lines as they come (Ctrl-C stops)."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DURATION", help="Only lines newer than this: seconds, 10m, 2h, or an ISO time."),
    kind: str = typer.Option("all", "--kind", metavar="build|replica|all", help="Which logs: the build's, the replicas', or both."),
    remote: Optional[str] = connect.remote_option(),
) -> None:
    """Print a deployment's logs (lines on stdout, each with its source)."""
    with connect.api(remote) as api:
        with api.logs(model, deployment, since=_seconds(since), follow=tail, kind=kind) as lines:
            try:
                for line in lines:
                    console.out.print(f"{line.get('at', '')} [{line.get('source', '')}] {line.get('text', '')}", markup=False)
            except KeyboardInterrupt:
                return


def _seconds(since: Optional[str]) -> Optional[str]:
    """`10m` / `2h` / `30s` / `1d` as seconds; anything else (seconds, ISO) passes as given."""
    if since is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if since[-1:] in units and since[:-1].isdigit():
        return str(int(since[:-1]) * units[since[-1]])
    return since
