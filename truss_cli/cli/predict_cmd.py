"""`truss predict`: call a running model server and print its answer (streams as it arrives)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from truss_cli.cli import connect, console
from truss_cli.cli.deployments_cmd import describe
from truss_cli.client.api import ApiError, gateway_target
from truss_cli.client.predict import Prediction
from truss_cli.client.predict import predict as request_prediction
from truss_cli.defaults import DEFAULT_URL
from truss_cli.errors import TrussError, UsageError
from truss_cli.examples import example_input


def predict(
    data: Optional[str] = typer.Option(None, "--data", "-d", metavar="JSON", help="The model input as a JSON string, e.g. '{\"name\": \"world\"}'."),
    file: Optional[Path] = typer.Option(
        None, "--file", "-f", metavar="FILE", help="Read the model input (JSON) from this file; '-' reads standard input.", allow_dash=True
    ),
    example: Optional[str] = typer.Option(
        None, "--example", "-e", metavar="NAME", help="Send the input of this example from the model's examples file (examples.yaml); a 0-based index works too."
    ),
    model_dir: Optional[Path] = typer.Option(
        None, "--model-dir", metavar="DIRECTORY", help="The model directory whose examples --example reads (default: the current directory)."
    ),
    url: Optional[str] = typer.Option(
        None, "--url", metavar="URL", help=f"The model server: its base URL (the predict path is added) or a full predict URL; default {DEFAULT_URL}."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", metavar="NAME_OR_ID", help="Call this model on a remote, through its gateway (instead of --url)."
    ),
    deployment: Optional[str] = typer.Option(
        None, "--deployment", metavar="REF", help="With --model: this deployment (id, name or development) instead of production."
    ),
    environment: Optional[str] = typer.Option(
        None, "--environment", metavar="NAME", help="With --model: this environment (e.g. staging) instead of production: whichever deployment serves it."
    ),
    remote: Optional[str] = connect.remote_option(),
) -> None:
    """Send one prediction request to a running model server and print the result.

    JSON results are printed as JSON (indented on a terminal, one line otherwise); a streaming model's chunks are printed as they arrive. Start a server with `truss run DIR`.
    """
    if model is None and (deployment is not None or environment is not None or remote is not None):
        raise UsageError("--deployment, --environment and --remote go with --model NAME (a model on a remote)")
    if deployment is not None and environment is not None:
        raise UsageError("--deployment and --environment cannot be used together: call one deployment, or whichever "
                         "serves the environment", hint="drop one of them")
    if model is not None and url is not None:
        raise UsageError("--url and --model cannot be used together: --url calls a model server, --model a model on a remote")
    payload = _read_input(data, file, example, model_dir)
    if model is not None:
        with connect.api(remote) as api:
            model_id, deployment_id = gateway_target(api, model, deployment)
            try:
                with api.predict(model_id, payload, deployment_id, environment) as response:
                    _print_prediction(Prediction(response))
            except ApiError as exc:
                production = environment in (None, "production") and deployment_id is None
                if exc.status == 503:
                    if production:
                        raise _with_deployment_state(api, model_id, None, exc) from None
                    serving = deployment_id or _serving(api, model_id, environment)
                    raise (_with_deployment_state(api, model_id, serving, exc) if serving else exc) from None
                if exc.error_code == "ENVIRONMENT_EMPTY" and production:
                    raise _why_production_is_empty(api, model, model_id, exc) from None
                # An empty environment's answer carries its hint (how to give it a deployment),
                # an unknown one's the environments there are: both print as they are.
                raise
        return
    with request_prediction(url or DEFAULT_URL, payload) as prediction:
        _print_prediction(prediction)


def _read_input(data: Optional[str], file: Optional[Path], example: Optional[str], model_dir: Optional[Path]) -> Any:
    given = [flag for flag, value in (("-d/--data", data), ("-f/--file", file), ("--example", example)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be used together; give the input once")
    if model_dir is not None and example is None:
        raise UsageError("--model-dir only says where --example finds the examples; add --example NAME")
    if not given:
        raise UsageError(
            "no model input: pass it with -d '<json>', -f FILE or --example NAME", hint="e.g. truss predict -d '{\"name\": \"world\"}'"
        )
    if example is not None:
        return example_input(model_dir or Path("."), example)
    if data is not None:
        return _parse_json(data, "-d/--data")
    assert file is not None
    if str(file) == "-":
        return _parse_json(sys.stdin.read(), "standard input (-f -)")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"-f/--file: {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"-f/--file: {file}: cannot read it ({exc})") from None
    return _parse_json(text, str(file))


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _print_prediction(prediction: Prediction) -> None:
    if prediction.is_json:
        result = prediction.json()
        if console.out.is_terminal:
            console.out.print_json(data=result)
        else:
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    # Streamed (text, JSON lines, bytes): write each chunk the moment it arrives.
    # Bytes go out unchanged (a model may stream binary); a UTF-8 character split across
    # two chunks is reassembled by the terminal, not mangled here.
    sys.stdout.flush()
    binary_out = sys.stdout.buffer
    last = b"\n"
    for chunk in prediction.iter_bytes():
        if chunk:
            binary_out.write(chunk)
            binary_out.flush()
            last = chunk
    if not last.endswith(b"\n") and sys.stdout.isatty():
        binary_out.write(b"\n")
        binary_out.flush()


def _why_production_is_empty(api: Any, model: str, model_id: str, error: ApiError) -> TrussError:
    """Production serves nothing while no deployment of the model has been ACTIVE: when the
    newest one failed, that is the answer a user wants (its state and cause), not only "empty"."""
    try:
        deployments = [d for d in api.deployments(model_id) if not d.get("is_development")]
    except TrussError:
        return error
    newest = deployments[-1] if deployments else None
    state = (newest or {}).get("status") or ""
    if not state.endswith("FAILED"):
        return error
    message = f"{error.message}: its deployment {describe(newest)} is {state}"
    if newest.get("status_detail"):
        message += f" ({newest['status_detail']})"
    return TrussError(message, hint=f"`truss logs --model {model} --deployment {newest.get('name')}` shows why; "
                                    "fix it and push again")


def _serving(api: Any, model_id: str, environment: Optional[str]) -> Optional[str]:
    """The deployment an environment serves (for its 503's explanation); None when the key may
    not read it (an invoke key: the gateway's words stand then)."""
    if environment is None:
        return None
    try:
        current = api.environment(model_id, environment).get("current_deployment") or {}
    except TrussError:
        return None
    return current.get("id")


def _with_deployment_state(api: Any, model_id: str, deployment_id: Optional[str], error: ApiError) -> TrussError:
    """The gateway's 503 knows no replica is ready, not why: the deployment's state says (when
    the key may read it; an invoke key may not, and then the gateway's words stand)."""
    try:
        deployment = api.deployment(model_id, deployment_id or "production")
    except TrussError:
        return error
    state = deployment.get("status")
    if not state or state == "ACTIVE":
        return error
    cause = deployment.get("status_detail")
    message = f"{error.message}: the deployment {deployment.get('id', '')} is {state}".replace("  ", " ")
    if cause:
        message += f" ({cause})"
    hint = "`truss logs` shows why" if state.endswith("FAILED") else "wait for it to become ACTIVE, then try again"
    return TrussError(message, hint=hint)
