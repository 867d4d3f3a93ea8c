"""`truss deployments autoscaling --model M DEPLOYMENT [--min-replica N ...]`: show or update
a deployment's autoscaling settings (Baseten's fields; docs/autoscaling.md).

Only the options given change (a partial update); the remote answers ACCEPTED (applied on
its next tick, no redeploy) or UNCHANGED. Without options it shows the settings. Ranges are
the remote's to check: a bad value comes back naming the field and what it must be.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from truss_cli.cli import connect, console, tables
from truss_cli.errors import TrussError

# (option name, field, help): the order `show` prints them in.
FIELDS = (
    ("--min-replica", "min_replica", "Replicas kept even with no load; 0 lets it scale to zero (0-1000)."),
    ("--max-replica", "max_replica", "The most replicas it scales up to (1-1000)."),
    ("--autoscaling-window", "autoscaling_window", "Seconds of load averaged to decide (10-3600)."),
    ("--scale-down-delay", "scale_down_delay", "Seconds the load must stay low before replicas are removed (0-3600)."),
    ("--concurrency-target", "concurrency_target", "Requests one replica serves at once; more wait at the gateway (1-10000)."),
    ("--target-utilization-percentage", "target_utilization_percentage", "Share of concurrency_target to aim at (1-100)."),
    ("--max-scale-down-rate", "max_scale_down_rate", "Percent of the replicas removed per scale-down step (1-50)."),
)


def _option(name: str, help_text: str) -> Any:
    return typer.Option(None, name, metavar="N", help=help_text, show_default=False)


def autoscaling(
    deployment: str = typer.Argument(..., metavar="DEPLOYMENT", help="The deployment: its id, its name or production.",
                                     show_default=False),
    model: str = typer.Option(..., "--model", "-m", metavar="NAME_OR_ID", help="The model of the deployment: its name or id."),
    min_replica: Optional[int] = _option(*FIELDS[0][::2]),
    max_replica: Optional[int] = _option(*FIELDS[1][::2]),
    autoscaling_window: Optional[int] = _option(*FIELDS[2][::2]),
    scale_down_delay: Optional[int] = _option(*FIELDS[3][::2]),
    concurrency_target: Optional[int] = _option(*FIELDS[4][::2]),
    target_utilization_percentage: Optional[int] = _option(*FIELDS[5][::2]),
    max_scale_down_rate: Optional[int] = _option(*FIELDS[6][::2]),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Show or change how many replicas a deployment runs and how fast they follow the load.

    Only the options given change; the others keep their values. Applied at once, without a redeploy.
    """
    given = {
        "min_replica": min_replica, "max_replica": max_replica, "autoscaling_window": autoscaling_window,
        "scale_down_delay": scale_down_delay, "concurrency_target": concurrency_target,
        "target_utilization_percentage": target_utilization_percentage, "max_scale_down_rate": max_scale_down_rate,
    }
    changes = {field: value for field, value in given.items() if value is not None}
    with connect.api(remote) as api:
        if changes:
            answer = api.update_autoscaling_settings(model, deployment, changes)
        else:
            answer = api.autoscaling_settings(model, deployment)
    if output is console.OutputFormat.json:
        console.result(output, "", answer)
        return
    if "status" in answer:
        verdict = "updated" if answer["status"] == "ACCEPTED" else "unchanged (already so)"
        console.out.print(f"Autoscaling settings of deployment {deployment} of model {model}: {verdict}", markup=False)
        if answer.get("waking_up"):
            floor = (answer.get("effective_autoscaling_settings") or {}).get("min_replica")
            console.out.print(f"It was scaled to zero: waking up with {floor} replica(s) (min_replica)", markup=False)
    _print_settings(answer)


def _print_settings(answer: dict[str, Any]) -> None:
    own = answer.get("autoscaling_settings") or {}
    effective = answer.get("effective_autoscaling_settings") or own
    if not own:
        raise TrussError("the remote answered no autoscaling settings", hint="is it a truss-cli control plane of this version?")
    rows = []
    for _, field, _ in FIELDS:
        note = "" if effective.get(field) == own.get(field) else f"{effective.get(field)} (its environment's)"
        rows.append((field, own.get(field), note))
    tables.print_rows(("SETTING", "VALUE", "APPLIED"), rows)
