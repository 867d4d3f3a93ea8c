"""`truss rollout status|pause|resume|cancel|force-cancel|force-roll-forward --model M
[--environment E]`: an environment's promotion, seen and steered (issue 11).

`status --watch` follows the promotion until it ends: on a terminal a live view redrawn twice a
second (cli/rollout_live.py); elsewhere a plain line each time the split, the step or a replica
count changes (they read the same in a log or CI); with `-o json` one JSON object per change.
It exits 0 when the promotion SUCCEEDED, 1 when it FAILED or was CANCELED.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import typer
from rich.live import Live

from truss_cli.cli import connect, console, rollout_live
from truss_cli.cli.help import Command, Group
from truss_cli.client import rollouts
from truss_cli.client.api import Api
from truss_cli.errors import TrussError

app = typer.Typer(cls=Group, help="Follow and steer the promotion of a deployment into an environment.",
                  no_args_is_help=True)

FINISHED = ("SUCCEEDED", "FAILED", "CANCELED")
INTERRUPTED = 130  # Ctrl-C: the shell's code for SIGINT
CANARY_NOTICE = "canary promotions are deprecated: use rolling deployments (promotion_settings.rolling_deploy)"
WATCH_INTERVAL = 1.0
LIVE_INTERVAL = 0.5  # the live view: asked and redrawn twice a second


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
                               help="Follow it until it ends: a live view on a terminal, else a line (or with -o json "
                                    "a JSON object) per change; exit 1 if it FAILED or was CANCELED."),
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
        try:
            # Nothing to follow (never promoted into, or over already): one line says it all.
            if output is console.OutputFormat.text and console.out.is_terminal and not _finished(body):
                body = _watch_live(api, model, environment, body)
            else:
                body = _watch_lines(api, model, environment, body, output)
        except KeyboardInterrupt:  # only the watching stops: the promotion goes on
            console.err.print(f"Stopped watching; the promotion goes on (truss rollout status --model {model} "
                              f"--environment {environment} shows it).", markup=False)
            raise typer.Exit(INTERRUPTED) from None
    _end(body, model, environment)


def _finished(body: dict[str, Any]) -> bool:
    promotion = body.get("promotion")
    return promotion is None or promotion["status"] in FINISHED


def _watch_lines(api: Api, model: str, environment: str, body: dict[str, Any],
                 output: console.OutputFormat) -> dict[str, Any]:
    """A line (or a JSON object) each time what it says changes; the last body."""
    last = None
    while True:
        seen = body if output is console.OutputFormat.json else describe(body)
        if seen != last:
            console.result(output, seen if isinstance(seen, str) else "", body)
            last = seen
        if _finished(body):
            return body
        time.sleep(WATCH_INTERVAL)
        body = rollouts.promotion(api, model, environment)


def _watch_live(api: Api, model: str, environment: str, body: dict[str, Any]) -> dict[str, Any]:
    """The live view until the promotion ends, then its final status as a plain line; the last body."""
    clock = rollout_live.PhaseClock()
    current = {"body": body}

    def view() -> Any:  # redrawn by Live between polls too: the phase's time keeps counting
        return rollout_live.render(current["body"], clock, width=console.out.width)

    if body.get("promotion"):
        clock.saw(body["promotion"])
    with Live(get_renderable=view, console=console.out, refresh_per_second=1 / LIVE_INTERVAL):
        while not _finished(body):
            time.sleep(LIVE_INTERVAL)
            body = rollouts.promotion(api, model, environment)
            if body.get("promotion"):
                clock.saw(body["promotion"])
            current["body"] = body
    console.result(console.OutputFormat.text, describe(body), body)
    return body


def _end(body: dict[str, Any], model: str, environment: str) -> None:
    """A promotion that FAILED or was CANCELED ends the watch with exit 1 and its cause."""
    promotion = body.get("promotion")
    if promotion is None or promotion["status"] == "SUCCEEDED":
        return
    candidate = (promotion.get("candidate_deployment") or {}).get("name") or "the candidate"
    cause = promotion.get("error_message") or (
        "all traffic is back on the previous deployment" if promotion["status"] == "CANCELED" else "no cause given")
    raise TrussError(f"the promotion of {candidate} into {environment} {promotion['status']}: {cause}",
                     hint=f"to promote it again: truss deployments promote --model {model} {candidate} "
                          f"--environment {environment}")


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
