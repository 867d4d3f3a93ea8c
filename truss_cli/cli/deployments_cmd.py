"""`truss deployments ...`: list, rename, deactivate, activate, delete, prune, promote, retry.

A deployment is given as the control plane resolves it: its id, its name, `production` or
`development`; an unknown one is answered with the list of what exists (client/api.py
prints it). Commands act on the resolved id, so `production` means the deployment that was
production when the command looked, even if another is promoted meanwhile.
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.text import Text

from truss_cli.cli import connect, console, tables
from truss_cli.cli.confirm import confirm, yes_option
from truss_cli.cli.help import Command, Group
from truss_cli.cli.rollout_cmd import CANARY_NOTICE
from truss_cli.client.api import Api
from truss_cli.client.waiting import FINAL_FAILURES, wait_for_status

app = typer.Typer(cls=Group, help="The deployments of a model on a remote: list, rename, deactivate, activate, promote, delete, prune, retry.", no_args_is_help=True)

ACTIVE, INACTIVE = "ACTIVE", "INACTIVE"


def model_option(action: str = "whose deployment to act on") -> Any:
    return typer.Option(..., "--model", "-m", metavar="NAME_OR_ID", help=f"The model {action}: its name or id.")


def deployment_argument(what: str = "The deployment") -> Any:
    return typer.Argument(..., metavar="DEPLOYMENT", help=f"{what}: its id, its name, production or development.", show_default=False)


def wait_option(until: str) -> Any:
    return typer.Option(False, "--wait/--no-wait", help=f"Wait until the deployment is {until} (default: return at once; `truss deployments list` shows the status).")


# -- list ------------------------------------------------------------------------------------

@app.command("list", cls=Command)
def list_deployments(
    model: str = model_option("whose deployments to list"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """List a model's deployments: name, id, version, status, role, replicas, age (since created)."""
    with connect.api(remote) as api:
        deployments = api.deployments(model)
    if output is console.OutputFormat.json:
        console.result(output, "", {"deployments": deployments})
        return
    if not deployments:
        console.out.print(f"Model {model} has no deployments. Push one with: truss push DIR --model-name {model}", markup=False)
        return
    print_deployments(deployments)


def print_deployments(deployments: list[dict[str, Any]]) -> None:
    """The deployments table, then the cause of each failed one (wrapped to the width)."""
    grid = tables.table(
        "NAME",
        ("ID", {"no_wrap": True}),
        ("VERSION", {"no_wrap": True}),
        "STATUS",
        ("ROLE", {"no_wrap": True}),
        ("REPLICAS", {"justify": "right", "no_wrap": True}),
        ("AGE", {"no_wrap": True, "justify": "right"}),
    )
    for d in deployments:
        tables.add_row(grid, [d.get("name") or "-", d.get("id"), d.get("version") or "-", status_cell(d), role(d), replicas(d), tables.age(d.get("created_at"))])
    tables.print_table(grid)
    for d in deployments:
        if d.get("status_detail") and str(d.get("status", "")).endswith("FAILED"):
            console.out.print(Text.assemble((f"{d.get('name') or d.get('id')}: ", "bold"), str(d["status_detail"])), soft_wrap=False)


def status_cell(deployment: dict[str, Any]) -> Text:
    """The model page's word ("Deploying"), and the precise status when it says more."""
    status = str(deployment.get("status") or "-")
    label = deployment.get("status_label")
    if not label:
        return Text(status)
    if str(label).upper().replace(" ", "_") == status:
        return Text(str(label))
    return Text.assemble(str(label), " ", (status, "dim"))


def role(deployment: dict[str, Any]) -> str:
    if deployment.get("is_production"):
        return "★ production"
    if deployment.get("is_development"):
        return "development"
    return deployment.get("environment") or ""


def replicas(deployment: dict[str, Any]) -> str:
    running = deployment.get("active_replica_count", 0)
    wanted = deployment.get("replicas")
    return f"{running}/{wanted}" if wanted is not None else str(running)


def describe(deployment: dict[str, Any]) -> str:
    """`deployment-2 (abc12345)`, as messages name a deployment."""
    name, ident = deployment.get("name"), deployment.get("id")
    return f"{name} ({ident})" if name and name != ident else str(ident)


# -- rename ----------------------------------------------------------------------------------

@app.command("rename", cls=Command)
def rename(
    deployment: str = deployment_argument("The deployment to rename"),
    new_name: str = typer.Argument(..., metavar="NEW_NAME", help="Its new name, unique within the model (names are cosmetic: API paths use ids).", show_default=False),
    model: str = model_option(),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Rename a deployment (the development deployment keeps its name)."""
    with connect.api(remote) as api:
        renamed = api.update_deployment(model, deployment, name=new_name)
    console.result(output, f"Renamed deployment {deployment} of model {model} to {describe(renamed)}", renamed)


# -- deactivate / activate -------------------------------------------------------------------

@app.command("deactivate", cls=Command)
def deactivate(
    deployment: str = deployment_argument("The deployment to deactivate"),
    model: str = model_option(),
    yes: bool = yes_option("deactivating the production deployment"),
    wait: bool = wait_option("INACTIVE (every replica stopped)"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Stop every replica of a deployment, keeping its configuration and build.

    Requests in flight finish first; afterwards its URLs answer 404 (it is inactive) until `truss deployments activate` starts it again without rebuilding. Deactivating the production deployment asks first: production traffic gets 404.
    """
    with connect.api(remote) as api:
        current = api.deployment(model, deployment)
        if current.get("is_production"):
            confirm(
                f"Deactivate deployment {describe(current)}, the production deployment of model {model}?",
                yes=yes,
                action=f"deactivate the production deployment of model {model}",
                warning=(
                    f"production traffic of model {model} will get 404 until deployment {current.get('name') or current['id']} "
                    f"is activated again (truss deployments activate --model {model} {current.get('name') or current['id']}) "
                    f"or another deployment is promoted"
                ),
            )
        done = api.deactivate_deployment(model, current["id"])
        if wait and done.get("status") != INACTIVE:
            done = _wait(api, model, done, until=(INACTIVE,), failures=())
    console.result(output, f"Deployment {describe(done)} of model {model} is {done.get('status')}" + ("" if wait else _follow_hint(model, done, INACTIVE)), done)


@app.command("activate", cls=Command)
def activate(
    deployment: str = deployment_argument("The deployment to activate"),
    model: str = model_option(),
    wait: bool = wait_option("ACTIVE (exit 1 if it fails to start)"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Start an inactive deployment again, from its stored build (no rebuild)."""
    with connect.api(remote) as api:
        done = api.activate_deployment(model, deployment)
        if wait and done.get("status") != ACTIVE:
            done = _wait(api, model, done, until=(ACTIVE,), failures=FINAL_FAILURES)
    console.result(output, f"Deployment {describe(done)} of model {model} is {done.get('status')}" + ("" if wait else _follow_hint(model, done, ACTIVE)), done)


def _wait(api: Api, model: str, deployment: dict[str, Any], until: tuple[str, ...], failures: tuple[str, ...]) -> dict[str, Any]:
    def on_status(seen: dict[str, Any]) -> None:
        console.err.print(f"  {seen.get('status')}" + (f": {seen['status_detail']}" if seen.get("status_detail") else ""), markup=False)

    with console.err.status(f"Waiting for deployment {describe(deployment)} to be {' or '.join(until)}…"):
        return wait_for_status(api, model, deployment["id"], until=until, failures=failures, on_status=on_status)


def _follow_hint(model: str, deployment: dict[str, Any], target: str) -> str:
    if deployment.get("status") == target:
        return ""
    return f" (becomes {target} shortly: truss deployments list --model {model}, or --wait)"


# -- promote ---------------------------------------------------------------------------------

@app.command("promote", cls=Command)
def promote(
    deployment: str = deployment_argument("The deployment to promote"),
    model: str = model_option(),
    environment: str = typer.Option("production", "--environment", "-e", metavar="NAME", help="The environment it is to serve (see `truss environments list`)."),
    keep_previous: Optional[bool] = typer.Option(None, "--keep-previous/--scale-down-previous", help="Keep the deployment it replaces running, or scale it down (default: the environment's cleanup strategy)."),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Make a deployment what an environment serves (production by default), without a rebuild.

    The deployment it replaces is then handled by the environment's cleanup strategy: SCALE_TO_ZERO (the default), KEEP or DEACTIVATE. Promoting the development deployment publishes it (a new deployment that becomes production once ACTIVE).
    """
    with connect.api(remote) as api:
        promoted = api.promote_deployment(model, deployment, None if environment == "production" else environment,
                                          None if keep_previous is None else not keep_previous)
    into = promoted.get("promoted_into") or environment
    promotion = promoted.get("in_progress_promotion")
    if promotion:  # the environment rolls (or ramps a canary): begun, not done
        if promotion.get("kind") == "canary":
            console.warning(CANARY_NOTICE)
        text = (f"Promotion of deployment {describe(promoted)} into {into} of model {model} begun "
                f"({promotion.get('kind')}, {promotion.get('status')}, "
                f"{promotion.get('percent_traffic_to_new_version')}% of the traffic so far); follow it with: "
                f"truss rollout status --model {model} --environment {into} --watch")
        console.result(output, text, promoted)
        return
    text = f"Deployment {describe(promoted)} now serves {into} of model {model}"
    previous = promoted.get("previous_deployment")
    if previous:
        old = previous.get("name") or previous["id"]
        cleanup = previous.get("cleanup")
        if cleanup == "KEEP":
            text += f"; the previous deployment {old} keeps running (stop it with: truss deployments deactivate --model {model} {old})"
        elif cleanup == "DEACTIVATE":
            text += f"; the previous deployment {old} is deactivated (truss deployments activate --model {model} {old} brings it back)"
        else:
            text += f"; the previous deployment {old} scales to zero (a request to it wakes it)"
    console.result(output, text, promoted)


# -- delete / prune --------------------------------------------------------------------------

@app.command("delete", cls=Command)
def delete(
    deployment: str = deployment_argument("The deployment to delete"),
    model: str = model_option(),
    yes: bool = yes_option("deleting"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Delete a deployment for good: its replicas, its build and its stored files (when nothing else uses them).

    It vanishes from listings and its URLs answer 404; its usage stays in `truss usage`. The production deployment cannot be deleted until another one is promoted.
    """
    with connect.api(remote) as api:
        current = api.deployment(model, deployment)
        confirm(
            f"Delete deployment {describe(current)} of model {model}? This cannot be undone.",
            yes=yes,
            action=f"delete deployment {current.get('name') or current['id']} of model {model}",
        )
        deleted = api.delete_deployment(model, current["id"])
    console.result(output, f"Deleted deployment {describe(current)} of model {model}", deleted)


@app.command("prune", cls=Command)
def prune(
    model: str = model_option("whose deployments to prune"),
    keep: int = typer.Option(..., "--keep", metavar="N", min=0, help="How many of the newest deployments to keep, besides production and development (which are never pruned)."),
    yes: bool = yes_option("deleting the listed deployments"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Delete all but the newest N deployments of a model (production and development stay).

    Lists what would be deleted and asks first (with --yes it deletes at once, then lists what it deleted); for CI pipelines that push on every commit.
    """
    with connect.api(remote) as api:
        if not yes:  # show what would go before asking (or before refusing to, off a terminal)
            plan = api.prune_deployments(model, keep, dry_run=True)
            going = plan.get("deleted") or []
            if not going:
                console.result(output, _nothing_to_prune(model, keep), plan)
                return
            console.err.print(f"{_count(len(going))} of model {model} would be deleted (keeping the newest {keep}, production and development):", markup=False)
            for item in going:
                console.err.print(f"  {describe(item)}", markup=False)
            confirm(f"Delete these {_count(len(going))}? This cannot be undone.", yes=yes, action=f"delete {_count(len(going))} of model {model}")
        done = api.prune_deployments(model, keep)
    deleted = done.get("deleted") or []
    if not deleted:
        console.result(output, _nothing_to_prune(model, keep), done)
        return
    console.result(output, f"Deleted {_count(len(deleted))} of model {model}: " + ", ".join(describe(item) for item in deleted), done)


def _nothing_to_prune(model: str, keep: int) -> str:
    return f"Nothing to prune: model {model} has no more than {keep} deployments besides production and development"


def _count(number: int) -> str:
    return f"{number} deployment" + ("" if number == 1 else "s")


# -- retry -----------------------------------------------------------------------------------

@app.command("retry", cls=Command)
def retry(
    deployment: str = deployment_argument("The failed deployment to rebuild"),
    model: str = model_option(),
    wait: bool = wait_option("ACTIVE (exit 1 with the cause if it fails again)"),
    remote: Optional[str] = connect.remote_option(),
    output: console.OutputFormat = console.output_option(),
) -> None:
    """Build a failed deployment (BUILD_FAILED or DEPLOY_FAILED) again from its stored files."""
    with connect.api(remote) as api:
        done = api.retry_deployment(model, deployment)
        if wait:
            done = _wait(api, model, done, until=(ACTIVE,), failures=FINAL_FAILURES)
    console.result(output, f"Deployment {describe(done)} of model {model} is {done.get('status')}" + ("" if wait else _follow_hint(model, done, ACTIVE)), done)
