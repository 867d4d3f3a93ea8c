"""Which control plane a remote command talks to: `--remote`, else the one in use.

`truss push` alone starts the local control plane when no remote is configured at all.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from truss_cli.cli import console, edge
from truss_cli.client import local_server
from truss_cli.client.api import Api
from truss_cli.client.remotes import NoRemote, Remote, read_remotes, trussrc_path
from truss_cli.settings import Settings


def remote_option() -> Any:
    return typer.Option(None, "--remote", metavar="NAME", help="The remote (in ~/.trussrc) to talk to; default: the one in use.")


def resolve(settings: Settings, name: Optional[str], start_local: bool = False) -> Remote:
    remotes = read_remotes(trussrc_path(settings.home))
    for warning in remotes.warnings:
        console.warning(warning)
    try:
        return remotes.resolve(name)
    except NoRemote:
        if not start_local:
            raise
    console.err.print("No remote configured: starting the local control plane (as `truss server start` does)…")
    running = local_server.start(settings)
    console.err.print(f"Control plane at {running.url} (runtime {running.server.get('runtime')}); recorded as remote `local` in ~/.trussrc")
    return running.remote


def api(name: Optional[str], start_local: bool = False) -> Api:
    return Api.for_remote(resolve(edge.settings(), name, start_local))
