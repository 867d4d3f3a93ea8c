"""The `truss` command: wires the command modules together and turns errors into exit codes."""

from __future__ import annotations

import sys
from typing import Any

import typer

try:  # Typer vendors click since 0.2x; before, it used the click package
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[no-redef]

from truss_cli import __version__
from truss_cli.cli import console
from truss_cli.cli import (
    autoscaling_cmd, deployments_cmd, environments_cmd, image_cmd, init_cmd, keys_cmd, logs_cmd, models_cmd,
    predict_cmd, push_cmd, remote_cmd, rollout_cmd, run_cmd, secrets_cmd, server_cmd, usage_cmd, watch_cmd,
)
from truss_cli.cli.help import Command, Group
from truss_cli.config import ConfigError
from truss_cli.errors import TrussError


class _ReportingGroup(Group):
    """Prints a TrussError or ConfigError as one clear message instead of a traceback, and bad
    usage as plain lines (Typer's boxed panel is wrapped at 80 columns off a terminal)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            # The "no arguments: show the help" case has printed the help already; it is a
            # usage error all the same (exit 2).
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(2)
            context = getattr(exc, "ctx", None)
            if context is not None:
                console.err.print(context.get_usage(), markup=False)
                console.err.print(f"Try '{context.command_path} --help' for help.", markup=False)
            console.error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            console.error("aborted")
            sys.exit(1)
        # Without standalone mode, click returns the code of a typer.Exit instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            console.error(str(exc))
            raise typer.Exit(2) from None
        except TrussError as exc:
            console.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="truss",
    cls=_ReportingGroup,
    help="Package ML models, run them locally, and deploy them to your own machines.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        console.out.print(f"truss-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Package ML models, run them locally, and deploy them to your own machines."""


app.command("init", cls=Command)(init_cmd.init)
app.command("run", cls=Command)(run_cmd.run)
app.command("predict", cls=Command)(predict_cmd.predict)
app.command("push", cls=Command)(push_cmd.push)
app.command("watch", cls=Command)(watch_cmd.watch)
app.add_typer(image_cmd.app, name="image")
app.add_typer(remote_cmd.app, name="remote")
app.add_typer(server_cmd.app, name="server")
app.command("logs", cls=Command)(logs_cmd.logs)
app.add_typer(models_cmd.app, name="models")
app.add_typer(deployments_cmd.app, name="deployments")
deployments_cmd.app.command("autoscaling", cls=Command)(autoscaling_cmd.autoscaling)  # issue 11, task B
app.add_typer(environments_cmd.app, name="environments")
app.command("usage", cls=Command)(usage_cmd.usage)
app.add_typer(keys_cmd.app, name="api-keys")
app.add_typer(secrets_cmd.app, name="secrets")
app.add_typer(rollout_cmd.app, name="rollout")


def main() -> None:
    app()
