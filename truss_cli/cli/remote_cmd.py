"""`truss remote add | list | use | remove`: the remotes in ~/.trussrc (Truss's file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from truss_cli.cli import console, edge
from truss_cli.cli.help import Command, Group
from truss_cli.client.remotes import Remote, Remotes, add_remote, read_remotes, remove_remote, trussrc_path, use_remote

app = typer.Typer(cls=Group, help="Manage the remotes (control planes) that truss push talks to, kept in ~/.trussrc.", no_args_is_help=True)

NameArgument = typer.Argument(..., metavar="NAME", help="The remote's name (its section in ~/.trussrc).")


def _trussrc() -> tuple[Path, Remotes]:
    """The file, read once first so that a fix it needed (its mode) is said whatever the command."""
    path = trussrc_path(edge.settings().home)
    remotes = read_remotes(path)
    for warning in remotes.warnings:
        console.warning(warning)
    return path, remotes


def _describe(remote: Remote) -> dict[str, Any]:
    return {
        "name": remote.name,
        "url": remote.url,
        "provider": remote.provider,
        "api_key_prefix": remote.key_prefix,
        "in_use": remote.is_default,
    }


@app.command("add", cls=Command)
def add(
    name: str = NameArgument,
    url: str = typer.Argument(..., metavar="URL", help="The control plane's base URL, e.g. http://127.0.0.1:8800."),
    api_key: str = typer.Option(
        ..., "--api-key", metavar="KEY", prompt="API key", hide_input=True,
        help="The API key to send (asked for, unechoed, when not given).",
    ),
    use: bool = typer.Option(False, "--use", help="Also make it the remote in use."),
    replace: bool = typer.Option(False, "--replace", help="Replace a remote of the same name."),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Add a remote. The first one added is the one in use."""
    path, before = _trussrc()
    remote = add_remote(path, name, url, api_key, use=use or not before.remotes, replace=replace)
    console.result(output, f"Added remote {remote.name} ({remote.url}){' (in use)' if remote.is_default else ''}", _describe(remote))


@app.command("list", cls=Command)
def list_(output: console.OutputFormat = console.output_option()) -> None:
    """List the remotes; API keys are shown by their first characters only."""
    path, remotes = _trussrc()
    rows = [_describe(remote) for remote in remotes.remotes]
    if not rows:
        text = f"No remotes in {path}. Add one with: truss remote add NAME URL --api-key KEY"
    else:
        width = max(len(row["name"]) for row in rows)
        text = "\n".join(
            f"{'*' if row['in_use'] else ' '} {row['name']:<{width}}  {row['url']}  {row['provider']}  key {row['api_key_prefix']}"
            for row in rows
        )
    default = remotes.default
    console.result(output, text, {"remotes": rows, "in_use": default.name if default else None})


@app.command("use", cls=Command)
def use(name: str = NameArgument, output: console.OutputFormat = console.output_option()) -> None:
    """Make NAME the remote that commands talk to without --remote."""
    path, _ = _trussrc()
    remote = use_remote(path, name)
    console.result(output, f"Using remote {remote.name} ({remote.url})", _describe(remote))


@app.command("remove", cls=Command)
def remove(name: str = NameArgument, output: console.OutputFormat = console.output_option()) -> None:
    """Remove the remote NAME from ~/.trussrc (the control plane itself is not touched)."""
    path, _ = _trussrc()
    remote = remove_remote(path, name)
    console.result(output, f"Removed remote {remote.name} ({remote.url})", _describe(remote))
