"""`truss watch` (and the watching half of `truss push --watch`): keep the model's development
deployment in step with the directory, one line per sync."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from truss_cli.cli import connect, console, signals
from truss_cli.client.api import Api
from truss_cli.client.dev_session import WatchSession, find_development, model_name_of, wait_serving
from truss_cli.client.patches import SyncResult

# As a shell reports a command ended by SIGINT (`truss run` does the same).
_INTERRUPTED = 130
_FILES_SHOWN = 3
# Actions whose code serves later, not when the answer comes.
_LATER = {
    "rebuild": "the development deployment is rebuilt from this tree; the previous code serves until it is ready",
    "deferred": "the deployment is asleep; its next start runs this tree",
}


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
    def on_status(seen: dict[str, Any]) -> None:
        detail = f": {seen['status_detail']}" if seen.get("status_detail") else ""
        console.err.print(f"  {seen.get('status')}{detail}", markup=False)

    if deployment.get("status") != "ACTIVE":
        with console.err.status("Waiting for the development deployment…"):
            deployment = wait_serving(api, deployment, keep_awake, on_status)
    predict = f"truss predict --model {model_name} --deployment development -d '<json>'"
    session = WatchSession(
        api, deployment, model_dir,
        on_result=lambda result: _print_result(result, output),
        hot_reload=hot_reload,
        keep_awake=keep_awake,
        on_tree_error=lambda error: console.warning(f"{error.message}" + (f" ({error.hint})" if error.hint else "")),
        on_ready=lambda: console.err.print(f"Watching {model_dir} for changes (Ctrl-C stops). Try: {predict}", markup=False),
    )
    session.run()


def _print_result(result: SyncResult, output: console.OutputFormat) -> None:
    if output is console.OutputFormat.json:
        console.out.print(json.dumps(result.to_dict()), markup=False, highlight=False, soft_wrap=True)
        return
    console.out.print(_line(result), soft_wrap=True)
    if result.traceback:
        console.out.print(Text(result.traceback.rstrip(), style="red"), soft_wrap=True)


def _line(result: SyncResult) -> Text:
    """`12:04:05 model/model.py → hot swap in 41 ms (model/model.py: predict changed)`."""
    files = ", ".join(result.files[:_FILES_SHOWN])
    if len(result.files) > _FILES_SHOWN:
        files += f" and {len(result.files) - _FILES_SHOWN} more"
    stamp = time.strftime("%H:%M:%S")
    took = "" if result.ms is None else f" in {result.ms:.0f} ms"
    if not result.ok:
        phase = f" ({result.phase})" if result.phase else ""
        return Text.assemble(
            f"{stamp} {files or '(no files)'} → ", (f"failed{phase}{took}: {result.error}", "bold red"),
            ("; the previous code keeps serving", "red"),
        )
    reason = f" ({result.reason})" if result.reason else ""
    if result.action in _LATER:
        # Not served yet: a time "from the save to served" would be a lie.
        return Text.assemble(f"{stamp} {files or '(no files)'} → ", (result.action, "yellow"), reason, f": {_LATER[result.action]}")
    style = "green" if result.action in ("hot_swap", "restart") else "yellow"
    if result.action == "none":
        # The saved files are what already serves (an edit undone, a failed patch reverted).
        return Text.assemble(f"{stamp} {files or '(no files)'} → ", ("no change", style), ": the code that serves is up to date")
    action = "hot swap" if result.action == "hot_swap" else result.action
    text = Text.assemble(f"{stamp} {files or '(no files)'} → ", (action, style), f"{took}{reason}")
    if result.needs_full_deploy_reason and result.needs_full_deploy_reason != result.reason:
        text.append(f"; {result.needs_full_deploy_reason}", style="yellow")
    return text
