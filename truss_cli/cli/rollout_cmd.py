"""`truss rollout status|pause|resume|cancel|force-cancel|force-roll-forward --model M
[--environment E]`: an environment's promotion, seen and steered (issue 11).

`status --watch` prints a line each time the split, the step or a replica count changes, until
the promotion ends (plain lines: they read the same in a terminal, a log or CI).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import typer

from truss_cli.cli import connect, console
from truss_cli.cli.help import Command, Group
from truss_cli.client import rollouts

app = typer.Typer(cls=Group, help="Follow and steer the promotion of a deployment into an environment.",
                  no_args_is_help=True)

FINISHED = ("SUCCEEDED", "FAILED", "CANCELED")
CANARY_NOTICE = "canary promotions are deprecated: use rolling deployments (promotion_settings.rolling_deploy)"
WATCH_INTERVAL = 1.0


def _model_option() -> Any:
    return typer.Option(..., "--model", "-m", metavar="NAME_OR_ID", help="The model: its name or id.")


def _environment_option() -> Any:
    return typer.Option("production", "--environment", "-e", metavar="NAME", help="The environment promoted into.")


def _replicas(view: Optional[dict[str, Any]]) -> str:
    if not view:
        return "-"
    if view.get("deleted"):
        return f"{view['id']} (deleted)"
    wanted = view.get("rollout_replicas")
    asked = wanted if wanted is not None else view.get("desired_replicas")
    return f"{view['name']} {view['ready_replicas']}/{asked} ready"


def describe(body: dict[str, Any]) -> str:
    """One line: status, split, step, both deployments' READY/wanted replicas."""
    promotion = body.get("promotion")
    if promotion is None:
        return f"No promotion into {body['environment']} yet."
    percent = promotion["percent_traffic_to_new_version"]
    step = f"  step {promotion['step']}/{promotion['steps']}" if promotion.get("steps") else ""
    pending = f"  ({promotion['requested_action']} pending)" if promotion.get("requested_action") else ""
    line = (f"{promotion['status']:<12} {promotion['kind']:<8} {percent:>3}% to "
            f"{_replicas(promotion['candidate_deployment'])}, {100 - percent:>3}% to "
            f"{_replicas(promotion['previous_deployment'])}{step}{pending}")
    if promotion.get("error_message"):
        line += f"\n  {promotion['error_message']}"
    return line


def _notice_canary(body: dict[str, Any]) -> None:
    if (body.get("promotion") or {}).get("kind") == "canary":
        console.warning(CANARY_NOTICE)


@app.command("status", cls=Command)
def status(
    model: str = _model_option(),
    environment: str = _environment_option(),
    watch: bool = typer.Option(False, "--watch", "-w",
                               help="Keep printing the split and replica counts until it ends."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Show the promotion in progress (else the last one): status, traffic split, replicas."""
    with connect.api(remote) as api:
        body = rollouts.promotion(api, model, environment)
        _notice_canary(body)
        if not watch:
            console.result(output, describe(body), body)
            return
        last = None
        while True:
            seen = body if output is console.OutputFormat.json else describe(body)
            if seen != last:
                console.result(output, seen if isinstance(seen, str) else "", body)
                last = seen
            promotion = body.get("promotion")
            if promotion is None or promotion["status"] in FINISHED:
                return
            time.sleep(WATCH_INTERVAL)
            body = rollouts.promotion(api, model, environment)


def _control_command(word: str, summary: str) -> None:
    def command(
        model: str = _model_option(),
        environment: str = _environment_option(),
        remote: Optional[str] = connect.remote_option(),
        output: console.OutputFormat = console.output_option(),
    ) -> None:
        with connect.api(remote) as api:
            answer = rollouts.control(api, model, environment, word)
        _notice_canary(answer)
        console.result(output, f"{answer['status']}: {answer['message']}", answer)

    command.__doc__ = summary
    command.__name__ = word.replace("-", "_")
    app.command(word, cls=Command)(command)


_control_command("pause", "Pause the rolling promotion at its next step boundary (traffic and replicas hold).")
_control_command("resume", "Resume a paused promotion (or take back a pause not yet applied).")
_control_command("cancel", "Cancel: traffic returns to the previous deployment as its replicas are ready.")
_control_command("force-cancel", "Cancel at once: all traffic back on the previous deployment now.")
_control_command("force-roll-forward", "Finish at once: all traffic on the candidate, which becomes current.")
