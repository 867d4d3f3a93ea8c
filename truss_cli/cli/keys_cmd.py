"""`truss api-keys create | list | revoke` on a remote."""

from __future__ import annotations

from typing import List, Optional

import typer

from truss_cli.cli import connect, console
from truss_cli.cli.help import Command, Group

app = typer.Typer(cls=Group, help="The API keys of a remote (admin keys manage it, invoke keys only predict).", no_args_is_help=True)


@app.command("create", cls=Command)
def create(
    scope: str = typer.Option("invoke", "--scope", metavar="admin|invoke", help="admin manages the remote; invoke may only predict."),
    models: Optional[List[str]] = typer.Option(None, "--model", metavar="NAME", help="Restrict an invoke key to this model (repeatable)."),
    name: Optional[str] = typer.Option(None, "--name", metavar="LABEL", help="A label to recognise the key by."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Create an API key. The key is shown once, now: store it."""
    with connect.api(remote) as api:
        created = api.create_api_key(scope, list(models or []), name)
    console.result(output, f"{created['key']}\n(scope {created['scope']}, prefix {created['prefix']}; it is not shown again)", created)


@app.command("list", cls=Command)
def list_(remote: Optional[str] = connect.remote_option(), output: console.OutputFormat = console.output_option()) -> None:
    """List the keys by prefix, scope, creation and last use (never the keys themselves)."""
    with connect.api(remote) as api:
        keys = api.api_keys()
    lines = [
        f"{k['prefix']}  {k['scope']}  {','.join(k.get('models') or []) or 'all models'}  {k.get('name') or ''}  created {k.get('created_at')}  last used {k.get('last_used_at') or 'never'}"
        for k in keys
    ]
    console.result(output, "\n".join(lines) or "No API keys.", {"api_keys": keys})


@app.command("revoke", cls=Command)
def revoke(
    prefix: str = typer.Argument(..., metavar="PREFIX", help="The key's prefix, as `truss api-keys list` shows it."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Revoke an API key: it stops working at once."""
    with connect.api(remote) as api:
        revoked = api.revoke_api_key(prefix)
    console.result(output, f"Revoked {prefix}", revoked)
