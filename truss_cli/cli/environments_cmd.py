"""`truss environments ...`: list, create, show, update, delete a model's environments.

Every model has `production`; others (`staging`, ...) are made here, get their own endpoint
(`/model-{id}/environments/{name}/predict`) and their own autoscaling and promotion settings.
A deployment gets into one with `truss push --environment NAME` or `truss deployments promote
--environment NAME`. Settings are given as JSON objects (Baseten's field names) and update
partially; the commonest promotion choices have flags of their own.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.text import Text

from truss_cli.cli import connect, console, tables
from truss_cli.cli.confirm import confirm, yes_option
from truss_cli.cli.help import Command, Group
from truss_cli.cli.rollout_cmd import CANARY_NOTICE
from truss_cli.errors import TrussError, UsageError

app = typer.Typer(cls=Group, help="A model's environments on a remote (production, staging, ...): list, create, show, update, delete.", no_args_is_help=True)

CLEANUP_STRATEGIES = ("SCALE_TO_ZERO", "KEEP", "DEACTIVATE")


def model_option() -> Any:
    return typer.Option(..., "--model", "-m", metavar="NAME_OR_ID", help="The model whose environments to act on: its name or id.")


def name_argument(what: str) -> Any:
    return typer.Argument(..., metavar="ENVIRONMENT", help=f"{what}: production, staging, ...", show_default=False)


def autoscaling_option() -> Any:
    return typer.Option(None, "--autoscaling-settings", metavar="JSON", help="Autoscaling settings, a JSON object, e.g. '{\"min_replica\": 1, \"max_replica\": 4}' (fields left out keep their value).")


def promotion_option() -> Any:
    return typer.Option(None, "--promotion-settings", metavar="JSON", help="Promotion settings, a JSON object, e.g. '{\"rolling_deploy\": true}' (fields left out keep their value).")


def cleanup_option() -> Any:
    return typer.Option(None, "--cleanup-strategy", metavar="|".join(CLEANUP_STRATEGIES), help="What happens to the deployment a promotion replaces: SCALE_TO_ZERO (the default), KEEP it running, or DEACTIVATE it.")


def _object(option: str, text: Optional[str]) -> Optional[dict[str, Any]]:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not JSON: {exc}", hint=f"give an object, e.g. {option} '{{\"max_replica\": 2}}'") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, not {type(value).__name__}", hint=f"e.g. {option} '{{\"max_replica\": 2}}'")
    return value


def _settings(autoscaling: Optional[str], promotion: Optional[str], cleanup: Optional[str]) -> dict[str, Any]:
    """The settings the options give: {"autoscaling_settings": ..., "promotion_settings": ...}."""
    changes: dict[str, Any] = {}
    scaling = _object("--autoscaling-settings", autoscaling)
    if scaling is not None:
        changes["autoscaling_settings"] = scaling
    promoting = _object("--promotion-settings", promotion)
    if cleanup is not None:
        strategy = cleanup.upper()
        if strategy not in CLEANUP_STRATEGIES:
            raise UsageError(f"unknown cleanup strategy {cleanup!r}", hint=f"use one of {', '.join(CLEANUP_STRATEGIES)}")
        promoting = {**(promoting or {}), "promotion_cleanup_strategy": strategy}
    if promoting is not None:
        changes["promotion_settings"] = promoting
    return changes


def _deployment(environment: dict[str, Any], key: str = "current_deployment") -> str:
    deployment = environment.get(key)
    if not deployment:
        return "-"
    return str(deployment.get("name") or deployment.get("id"))


def _promotion(environment: dict[str, Any]) -> str:
    """`RAMPING_UP rolling: 40% to deployment-2 (candidate), 60% to deployment-1 (previous)`."""
    promotion = environment.get("in_progress_promotion")
    if not promotion:
        return "-"
    percent = promotion.get("percent_traffic_to_new_version") or 0
    text = (f"{promotion.get('status')} {promotion.get('kind')}: {percent}% to "
            f"{_deployment(environment, 'candidate_deployment')} (candidate), {100 - percent}% to "
            f"{_deployment(environment)} (previous)")
    if promotion.get("error_message"):
        text += f"; {promotion['error_message']}"
    return text


def promotion_kind(environment: dict[str, Any]) -> str:
    """How a promotion into the environment runs: rolling, canary or instant (its settings)."""
    settings = environment.get("promotion_settings") or {}
    if settings.get("rolling_deploy"):
        return "rolling"
    if settings.get("ramp_up_while_promoting"):
        return "canary"
    return "instant"


def _notice_canary(changes: dict[str, Any]) -> None:
    """Turning canary promotions on: they are deprecated (Baseten's docs say so too)."""
    if (changes.get("promotion_settings") or {}).get("ramp_up_while_promoting"):
        console.warning(CANARY_NOTICE)


@app.command("list", cls=Command)
def list_environments(
    model: str = model_option(),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """List a model's environments: name, the deployment it serves, its status, how promotions run, a promotion under way."""
    with connect.api(remote) as api:
        environments = api.environments(model)
    if output is console.OutputFormat.json:
        console.result(output, "", {"environments": environments})
        return
    tables.print_rows(
        ["NAME", "DEPLOYMENT", "STATUS", "PROMOTION", "IN PROGRESS"],
        ([e.get("name"), _deployment(e), (e.get("current_deployment") or {}).get("status") or "-", promotion_kind(e), _promotion(e)]
         for e in environments),
    )


@app.command("create", cls=Command)
def create(
    name: str = name_argument("The new environment's name"),
    model: str = model_option(),
    autoscaling_settings: Optional[str] = autoscaling_option(),
    promotion_settings: Optional[str] = promotion_option(),
    cleanup_strategy: Optional[str] = cleanup_option(),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Create an environment (it serves nothing until a deployment is pushed or promoted into it)."""
    changes = _settings(autoscaling_settings, promotion_settings, cleanup_strategy)
    with connect.api(remote) as api:
        created = api.create_environment(model, name, changes.get("autoscaling_settings"), changes.get("promotion_settings"))
    _notice_canary(changes)
    console.result(output, f"Environment {created.get('name')} of model {model} created; deploy into it with: "
                           f"truss push --environment {created.get('name')} (or truss deployments promote --model {model} DEPLOYMENT --environment {created.get('name')})", created)


@app.command("show", cls=Command)
def show(
    name: str = name_argument("The environment to show"),
    model: str = model_option(),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Show an environment: the deployment it serves, a promotion under way, its autoscaling and promotion settings."""
    with connect.api(remote) as api:
        environment = api.environment(model, name)
    if output is console.OutputFormat.json:
        console.result(output, "", environment)
        return
    _print(environment, model)


def _print(environment: dict[str, Any], model: str) -> None:
    current = environment.get("current_deployment") or {}
    scaling = environment.get("autoscaling_settings")
    facts = [
        ("Deployment", _deployment(environment) + (f" ({current.get('status')})" if current else
                                                   " (none yet: push or promote a deployment into it)")),
        ("Promotion", _promotion(environment)),
        *([("Follow it", f"truss rollout status --watch --model {model} --environment {environment.get('name')}")]
          if environment.get("in_progress_promotion") else []),
        ("Promotes", promotion_kind(environment)),
        ("Cleanup", (environment.get("promotion_settings") or {}).get("promotion_cleanup_strategy", "-")),
        ("Autoscaling", json.dumps(scaling) if scaling is not None else "each deployment's own"),
        ("Promotion settings", json.dumps(environment.get("promotion_settings") or {})),
        ("Created", tables.ago(environment.get("created_at"))),
    ]
    console.out.print(Text.assemble((str(environment.get("name")), "bold"), f" ({environment.get('id')})"))
    grid = tables.table(("", {"style": "dim", "no_wrap": True}), "")
    grid.show_header = False
    for key, value in facts:
        tables.add_row(grid, [key, value])
    tables.print_table(grid)


@app.command("update", cls=Command)
def update(
    name: str = name_argument("The environment to change"),
    model: str = model_option(),
    autoscaling_settings: Optional[str] = autoscaling_option(),
    promotion_settings: Optional[str] = promotion_option(),
    cleanup_strategy: Optional[str] = cleanup_option(),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Change an environment's settings; the fields given change, the others stay."""
    changes = _settings(autoscaling_settings, promotion_settings, cleanup_strategy)
    if not changes:
        raise UsageError("nothing to update", hint="give --autoscaling-settings, --promotion-settings and/or --cleanup-strategy")
    with connect.api(remote) as api:
        updated = api.update_environment(model, name, changes)
    _notice_canary(changes)
    word = "updated" if updated.get("status") == "ACCEPTED" else "unchanged (it already had these settings)"
    console.result(output, f"Environment {updated.get('name')} of model {model} {word}", updated)


@app.command("delete", cls=Command)
def delete(
    name: str = name_argument("The environment to delete"),
    model: str = model_option(),
    yes: bool = yes_option("deleting"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Delete an environment (never production). The deployment it served keeps running, in no environment."""
    with connect.api(remote) as api:
        current = api.environment(model, name)
        if current.get("name") == "production":
            raise TrussError("production cannot be deleted: every model has one",
                             hint=f"promote another deployment into it instead, or delete the model: truss models delete {model}")
        confirm(f"Delete environment {name} of model {model}? Its endpoint stops answering.", yes=yes,
                action=f"delete environment {name} of model {model}")
        deleted = api.delete_environment(model, name)
    console.result(output, f"Environment {name} of model {model} deleted", deleted)
