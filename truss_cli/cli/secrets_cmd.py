"""`truss secrets set | list | delete` on a remote; values are never printed."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from truss_cli.cli import connect, console
from truss_cli.cli.help import Command, Group
from truss_cli.errors import UsageError

app = typer.Typer(cls=Group, help="A remote's secrets (values stored encrypted, given to the models that declare them).", no_args_is_help=True)

NameArgument = typer.Argument(..., metavar="NAME", help="The secret's name, as config.yaml's secrets declare it.")


@app.command("set", cls=Command)
def set_(
    name: str = NameArgument,
    value: Optional[str] = typer.Option(None, "--value", metavar="VALUE", help="The value (default: read from standard input, so it stays out of your shell history)."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Set (or replace) a secret."""
    if value is None:
        if sys.stdin.isatty():
            value = typer.prompt(f"Value of {name}", hide_input=True)
        else:
            value = sys.stdin.read().rstrip("\n")
    if not value:
        raise UsageError(f"secret {name}: empty value", hint="pass --value or pipe the value in")
    with connect.api(remote) as api:
        api.set_secret(name, value)
    console.result(output, f"Set secret {name}", {"name": name})


@app.command("list", cls=Command)
def list_(remote: Optional[str] = connect.remote_option(), output: console.OutputFormat = console.output_option()) -> None:
    """List the secrets' names (values are never shown)."""
    with connect.api(remote) as api:
        secrets = api.secrets()
    lines = [f"{s['name']}  updated {s.get('updated_at')}" for s in secrets]
    console.result(output, "\n".join(lines) or "No secrets.", {"secrets": secrets})


@app.command("delete", cls=Command)
def delete(name: str = NameArgument, remote: Optional[str] = connect.remote_option(), output: console.OutputFormat = console.output_option()) -> None:
    """Delete a secret."""
    with connect.api(remote) as api:
        api.delete_secret(name)
    console.result(output, f"Deleted secret {name}", {"name": name, "deleted": True})
