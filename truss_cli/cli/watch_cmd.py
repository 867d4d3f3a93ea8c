"""`truss watch` (and the watching half of `truss push --watch`): keep the model's development
deployment in step with the directory, one line per sync (cli/watch_output.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from truss_cli.cli import connect, console, signals
from truss_cli.cli.watch_output import SyncPrinter
from truss_cli.client.api import Api
from truss_cli.client.dev_session import WatchSession, find_development, model_name_of, wait_serving

# As a shell reports a command ended by SIGINT (`truss run` does the same).
_INTERRUPTED = 130


def keep_awake_option() -> Any:
    return typer.Option(
        True, "--no-sleep/--allow-sleep",
        help="--no-sleep (the default) keeps the development deployment awake while watching; --allow-sleep lets it scale to zero when idle (syncs are then applied at its next start).",
    )


def hot_reload_option() -> Any:
    return typer.Option(
        False, "--no-hot-reload",
        help="Restart the model's worker on every change instead of swapping code into the loaded model.",
    )


def watch(
    model_dir: Path = typer.Argument(Path("."), metavar="DIRECTORY", help="The model directory (with config.yaml); default: the current directory.", show_default=False),
    remote: Optional[str] = connect.remote_option(),
    model_name: Optional[str] = typer.Option(None, "--model-name", metavar="NAME", help="The model whose development deployment to sync; default: config.yaml's model_name, else the directory's name."),
    keep_awake: bool = keep_awake_option(),
    no_hot_reload: bool = hot_reload_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Sync a model directory into its development deployment as files change.

    Attaches to the development deployment `truss push --watch` created: local changes made since are sent first, then each save is patched in (a hot swap of the model's code when it is safe, else a restart of its worker; a change patches cannot carry rebuilds it). One line per sync; Ctrl-C stops watching (exit code 130) and leaves the deployment running.
    """
    directory = model_dir.resolve()
    name = model_name_of(directory, model_name)
    with connect.api(remote) as api:
        deployment = find_development(api, name)
        watch_deployment(api, deployment, name, directory, keep_awake, not no_hot_reload, output)


def watch_deployment(
    api: Api, deployment: dict[str, Any], model_name: str, model_dir: Path, keep_awake: bool, hot_reload: bool,
    output: console.OutputFormat,
) -> None:
    """Wait until the development deployment serves, then sync until Ctrl-C (exit 130)."""
    with signals.interruptible():
        try:
            _watch(api, deployment, model_name, model_dir, keep_awake, hot_reload, output)
        except KeyboardInterrupt:
            console.err.print("Stopped watching; the development deployment keeps serving the last synced code.")
            raise typer.Exit(_INTERRUPTED) from None


def _watch(
    api: Api, deployment: dict[str, Any], model_name: str, model_dir: Path, keep_awake: bool, hot_reload: bool,
    output: console.OutputFormat,
) -> None:
    _say_dashboard(api, deployment, model_name, output)

    def on_status(seen: dict[str, Any]) -> None:
        detail = f": {seen['status_detail']}" if seen.get("status_detail") else ""
        console.err.print(f"  {seen.get('status')}{detail}", markup=False)

    if deployment.get("status") != "ACTIVE":
        with console.err.status("Waiting for the development deployment…"):
            deployment = wait_serving(api, deployment, keep_awake, on_status)
    predict = f"truss predict --model {model_name} --deployment development -d '<json>'"
    printer = SyncPrinter(output)
    session = WatchSession(
        api, deployment, model_dir,
        on_result=printer.result,
        on_rebuild_phase=printer.rebuild_phase,
        hot_reload=hot_reload,
        keep_awake=keep_awake,
        on_tree_error=lambda error: console.warning(f"{error.message}" + (f" ({error.hint})" if error.hint else "")),
        on_ready=lambda: console.err.print(f"Watching {model_dir} for changes (Ctrl-C stops). Try: {predict}", markup=False),
    )
    try:
        session.run()
    finally:
        printer.close()



def dashboard_url(api: Api, deployment: dict[str, Any]) -> str:
    """The control plane's Development tab of the model: its patch hash, last syncs, awake or not."""
    return f"{api.url}/models/{deployment['model_id']}/development"


def _say_dashboard(api: Api, deployment: dict[str, Any], model_name: str, output: console.OutputFormat) -> None:
    """Where to watch the syncs in a browser, before anything else: on stderr as a line (stdout
    is one line per sync), or as the first JSON object (`action: watching`) with `--output json`."""
    url = dashboard_url(api, deployment)
    if output is console.OutputFormat.json:
        first = {"action": "watching", "model": {"id": deployment["model_id"], "name": model_name},
                 "deployment_id": deployment.get("id"), "dashboard_url": url}
        console.out.print(json.dumps(first), markup=False, highlight=False, soft_wrap=True)
    else:
        console.err.print(f"Dashboard: {url}", markup=False)
