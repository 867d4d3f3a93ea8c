"""`truss push`: send a model directory to a remote, create a deployment, optionally wait."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from truss_cli.archive.format import format_size
from truss_cli.cli import connect, console, edge, watch_cmd
from truss_cli.cli.environments_cmd import promotion_kind
from truss_cli.cli.rollout_cmd import CANARY_NOTICE, FINISHED
from truss_cli.client import rollouts
from truss_cli.client.api import Api
from truss_cli.client.log_follow import LogFollower
from truss_cli.client.push import PreparedPush, Upload, lacking, prepare_push, upload
from truss_cli.client.waiting import DeploymentFailed, wait_for_status
from truss_cli.errors import UsageError

_VERBOSE_SHOWN = 50


class VersionBump(str, Enum):
    MAJOR = "MAJOR"
    MINOR = "MINOR"
    PATCH = "PATCH"


def push(
    model_dir: Path = typer.Argument(Path("."), metavar="DIRECTORY", help="The model directory (with config.yaml); default: the current directory.", show_default=False),
    remote: Optional[str] = connect.remote_option(),
    model_name: Optional[str] = typer.Option(None, "--model-name", metavar="NAME", help="The model to deploy to (created if new); default: config.yaml's model_name, else the directory's name."),
    deployment_name: Optional[str] = typer.Option(None, "--deployment-name", metavar="NAME", help="A name for this deployment, unique within the model (default: deployment-1, deployment-2, … in order)."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Wait until the deployment is ACTIVE (exit 0) or failed (exit 1, with the cause)."),
    tail: bool = typer.Option(False, "--tail", help="While waiting, stream the deployment's build and replica logs (implies --wait)."),
    timeout_seconds: Optional[float] = typer.Option(None, "--timeout-seconds", metavar="SECONDS", min=0, help="Give up waiting after this long (the deployment keeps going)."),
    promote: bool = typer.Option(False, "--promote", help="Make this deployment production once it is ACTIVE."),
    environment: Optional[str] = typer.Option(None, "--environment", metavar="NAME", help="Deploy into this environment (e.g. staging): it serves there once ACTIVE (see `truss environments list`)."),
    preserve_previous_production_deployment: bool = typer.Option(False, "--preserve-previous-production-deployment", help="With --promote or --environment: keep the deployment this one replaces running (default: the environment's cleanup strategy, SCALE_TO_ZERO unless changed)."),
    labels: Optional[str] = typer.Option(None, "--labels", metavar="JSON", help="Labels for the deployment, a JSON object, e.g. '{\"team\": \"nlp\"}'."),
    version_bump: Optional[VersionBump] = typer.Option(
        None, "--version-bump", metavar="MAJOR|MINOR|PATCH", case_sensitive=False,
        help="The part of the model's highest version this deployment bumps: MAJOR (0.2.0 → 1.0.0), MINOR (the default: 0.3.0) or PATCH (0.2.1). A model's first deployment is 0.1.0.",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="List the files sent, largest first."),
    output: console.OutputFormat = console.output_option(),
    watch: bool = typer.Option(False, "--watch", help="Push to the model's development deployment (created, or reused), wait until it serves, then sync every change of the directory into it until Ctrl-C (as `truss watch`)."),
    keep_awake: bool = watch_cmd.keep_awake_option(),
    no_hot_reload: bool = watch_cmd.hot_reload_option(),
) -> None:
    """Push a model directory to a remote control plane, which builds, runs and serves it.

    Validates the directory locally first, then uploads only the files the remote lacks (nothing when unchanged) and creates a deployment. With no remote configured, starts the local control plane first (see `truss server start`).
    """
    settings = edge.settings()
    if watch:
        _refuse_with_watch(promote=promote, deployment_name=deployment_name, version_bump=version_bump,
                           environment=environment,
                           preserve_previous_production_deployment=preserve_previous_production_deployment)
    if preserve_previous_production_deployment and not (promote or environment):
        raise UsageError("--preserve-previous-production-deployment only means something with --promote or --environment",
                         hint="add --promote (production) or --environment NAME")
    parsed_labels = _labels(labels)
    prepared = prepare_push(model_dir, settings, model_name)
    if watch:
        _push_and_watch(prepared, remote, parsed_labels, verbose, keep_awake, not no_hot_reload, output)
        return
    for warning in prepared.loaded.warnings:
        console.warning(warning)
    with Api.for_remote(connect.resolve(settings, remote, start_local=True)) as api:
        sent = _send(api, prepared, settings.cache_dir / "push", verbose)
        deployment = api.create_deployment(
            prepared.model_name, prepared.tree_hash, deployment_name, parsed_labels, promote,
            preserve_previous_production_deployment=preserve_previous_production_deployment,
            version_bump=None if version_bump is None else version_bump.value, environment=environment,
        )
        for warning in deployment.get("warnings") or []:
            console.warning(str(warning))
        model_id, deployment_id = deployment["model_id"], deployment["id"]
        console.err.print(f"Deployment {_named(deployment)} of model {prepared.model_name} created ({deployment.get('status')})", markup=False)
        into = environment or ("production" if promote else None)
        if into is not None and promotion_kind(api.environment(model_id, into)) == "canary":
            console.warning(CANARY_NOTICE)
        if wait or tail:
            deployment = _wait(api, model_id, deployment_id, timeout_seconds, tail, output)
        result = _result(api, prepared, deployment, sent)
        promoted = None
        if into is not None and deployment.get("status") == "ACTIVE":
            promoted = rollouts.after_active(api, model_id, into, deployment_id)
            if promoted is not None and promoted.get("current_deployment_id") == deployment_id:
                # Read again: the promotion made it production (is_production, the predict URL).
                result = _result(api, prepared, api.deployment(model_id, deployment_id), sent)
                deployment = result["deployment"]
            result["environment"] = into  # fields added for --environment / --promote; the others stay
            result["promotion"] = _its_promotion(promoted, deployment_id)
            result["environment_predict_url"] = api.predict_url(model_id, environment=into)
    if output is console.OutputFormat.json:
        console.result(output, "", result)
        return
    if deployment.get("status") == "ACTIVE":
        console.out.print(f"Deployment {_named(deployment)} is ACTIVE{_into(into, promoted, deployment_id)}", markup=False)
        if into is not None and promoted is not None and _rolls_on(promoted, deployment_id):
            console.out.print(f"Follow it with: truss rollout status --watch --model {prepared.model_name} --environment {into}",
                              markup=False)
        elif into is not None and promoted is None:
            console.out.print(f"See why in its log: truss logs --model {prepared.model_name} --deployment {deployment_id}",
                              markup=False)
        if _serves(into, promoted, deployment_id) and not deployment.get("is_production"):
            # It serves a (non-production) environment: its callers use the environment's URL,
            # which follows later promotions, not this deployment's own.
            url, target = result["environment_predict_url"], f" --environment {into}"
        else:
            url = result["predict_url"]
            target = "" if deployment.get("is_production") else f" --deployment {deployment.get('name')}"
        console.out.print(f"Predict URL: {url}", markup=False)
        console.out.print(f"Try: truss predict --model {prepared.model_name}{target} -d '<json>'", markup=False)
    else:
        console.out.print(
            f"Deployment {_named(deployment)} is {deployment.get('status')}; follow it with: truss logs --model {prepared.model_name} --deployment {deployment_id} --tail",
            markup=False,
        )
    console.out.print(f"Dashboard: {result['dashboard_url']}", markup=False)


def _its_promotion(promoted: Optional[dict[str, Any]], deployment_id: str) -> Optional[dict[str, Any]]:
    """The promotion of this deployment (null: instant, or none began; an earlier one is not it)."""
    promotion = (promoted or {}).get("promotion") or {}
    return promotion if (promotion.get("candidate_deployment") or {}).get("id") == deployment_id else None


def _serves(environment: Optional[str], promoted: Optional[dict[str, Any]], deployment_id: str) -> bool:
    """The deployment serves the environment it was pushed into (an instant promotion)."""
    return environment is not None and (promoted or {}).get("current_deployment_id") == deployment_id


def _rolls_on(promoted: dict[str, Any], deployment_id: str) -> bool:
    """A promotion of the deployment is under way (not instant, not over)."""
    promotion = promoted.get("promotion") or {}
    return promoted.get("current_deployment_id") != deployment_id and promotion.get("status") not in FINISHED


def _into(environment: Optional[str], promoted: Optional[dict[str, Any]], deployment_id: str) -> str:
    """What became of a deployment pushed into an environment, once ACTIVE (said after "is ACTIVE")."""
    if environment is None:
        return ""
    if promoted is None:
        return f" but does not serve {environment}: no promotion into it began"
    if promoted.get("current_deployment_id") == deployment_id:
        return f" and serves {environment}"
    promotion = promoted["promotion"]
    if promotion["status"] in FINISHED:  # it began and ended already (a failed candidate, a cancel)
        return (f"; its {promotion['kind']} promotion into {environment} {promotion['status']}"
                + (f": {promotion['error_message']}" if promotion.get("error_message") else ""))
    return (f"; a {promotion['kind']} promotion into {environment} began ({promotion['status']}, "
            f"{promotion['percent_traffic_to_new_version']}% of the traffic so far)")


def _refuse_with_watch(**given: Any) -> None:
    """`--watch` pushes to the development deployment, which has no name, version or promotion."""
    conflicts = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False)]
    if conflicts:
        raise UsageError(
            f"--watch pushes to the model's development deployment; it cannot be combined with {', '.join(conflicts)}",
            hint="drop them, or push without --watch to create a published deployment",
        )


def _push_and_watch(
    prepared: PreparedPush, remote: Optional[str], labels: dict[str, Any], verbose: bool, keep_awake: bool,
    hot_reload: bool, output: console.OutputFormat,
) -> None:
    settings = edge.settings()
    with Api.for_remote(connect.resolve(settings, remote, start_local=True)) as api:
        _send(api, prepared, settings.cache_dir / "push", verbose)
        deployment = api.push_development(prepared.model_name, prepared.tree_hash, labels)
        for warning in deployment.get("warnings") or []:
            console.warning(str(warning))
        action = {"created": "created", "unchanged": "reused (it runs this tree)",
                  "staged": "reused; the changes made since it last synced are patched in",
                  "rebuilding": "rebuilding from this tree"}
        console.err.print(
            f"Development deployment of model {prepared.model_name} {action.get(deployment.get('action'), deployment.get('action'))} ({deployment.get('status')})",
            markup=False,
        )
        watch_cmd.watch_deployment(api, deployment, prepared.model_name, prepared.model_dir, keep_awake, hot_reload, output)


def _named(deployment: dict[str, Any]) -> str:
    """`deployment-2 (version 0.2.0)`: the name people use, and the version when it has one."""
    name = deployment.get("name") or deployment.get("id")
    version = deployment.get("version")
    return f"{name} (version {version})" if version else str(name)


def _labels(text: Optional[str]) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--labels: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise UsageError("--labels: expected a JSON object, e.g. '{\"team\": \"nlp\"}'")
    return value


def _send(api: Api, prepared: PreparedPush, scratch: Path, verbose: bool) -> Upload | None:
    missing, needed = lacking(api, prepared)
    plan = prepared.plan
    if not needed:
        console.err.print(f"Nothing to upload: the remote has all {len(plan.files)} files ({format_size(plan.total_bytes)})")
        return None
    if verbose:
        chosen = plan.largest_first(missing)
        console.err.print(f"Sending {len(chosen)} of {len(plan.files)} files, largest first:", markup=False)
        for item in chosen[:_VERBOSE_SHOWN]:
            console.err.print(f"  {format_size(item.size):>10}  {item.path}", markup=False)
        if len(chosen) > _VERBOSE_SHOWN:
            console.err.print(f"  … and {len(chosen) - _VERBOSE_SHOWN} more", markup=False)
    to_pack = sum(item.size for item in plan.to_send(missing))
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console.err, transient=False) as bars:
        packing = bars.add_task("Packing  ", total=to_pack)
        sending = bars.add_task("Uploading", total=None, start=False)

        def on_sending(total: int) -> None:
            bars.update(sending, total=total)
            bars.start_task(sending)

        sent = upload(
            api, prepared, missing, scratch,
            on_packed=lambda count: bars.advance(packing, count),
            on_sending=on_sending,
            on_sent=lambda count: bars.advance(sending, count),
        )
    console.err.print(f"Uploaded {len(sent.files)} files ({format_size(sent.content_bytes)}, {format_size(sent.archive_bytes)} compressed)")
    return sent


def _wait(api: Api, model_id: str, deployment_id: str, timeout: Optional[float], tail: bool, output: console.OutputFormat) -> dict[str, Any]:
    def on_status(deployment: dict[str, Any]) -> None:
        console.err.print(f"  {deployment.get('status')}" + (f": {deployment['status_detail']}" if deployment.get("status_detail") else ""), markup=False)

    try:
        if tail:
            return _wait_tailing(api, model_id, deployment_id, timeout, on_status)
        with console.err.status("Waiting for the deployment…"):
            return wait_for_status(api, model_id, deployment_id, timeout_seconds=timeout, on_status=on_status)
    except DeploymentFailed as failed:
        if output is console.OutputFormat.json:
            console.result(output, "", {"deployment": failed.deployment, "error": failed.message})
        raise


def _wait_tailing(api: Api, model_id: str, deployment_id: str, timeout: Optional[float], on_status: Any) -> dict[str, Any]:
    """Wait while printing the build log, then the replicas' logs, until ACTIVE or failed
    (the log lines are the progress: no spinner)."""

    def print_line(line: dict[str, Any]) -> None:
        console.err.print(f"[{line.get('source')}] {line.get('text', '')}", markup=False, highlight=False)

    def saw(deployment: dict[str, Any]) -> None:
        on_status(deployment)
        follower.saw(deployment)

    with LogFollower(api, model_id, deployment_id, print_line) as follower:
        try:
            deployment = wait_for_status(api, model_id, deployment_id, timeout_seconds=timeout, on_status=saw)
        except DeploymentFailed:
            follower.finish(failed=True)
            raise
        follower.finish(failed=False)
    for error in follower.errors:
        console.warning(f"the log stream: {error.message}")
    return deployment


def _result(api: Api, prepared: PreparedPush, deployment: dict[str, Any], sent: Upload | None) -> dict[str, Any]:
    return {
        "model": {"id": deployment["model_id"], "name": prepared.model_name},
        "deployment": deployment,
        "tree_hash": prepared.tree_hash,
        "uploaded_files": [] if sent is None else [item.path for item in sent.files],
        "uploaded_bytes": 0 if sent is None else sent.archive_bytes,
        "predict_url": api.predict_url(deployment["model_id"], None if deployment.get("is_production") else deployment["id"]),
        # The model's page on the control plane's dashboard (the plane serves it at its root).
        "dashboard_url": f"{api.url}/models/{deployment['model_id']}",
    }

