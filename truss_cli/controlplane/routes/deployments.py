"""`/v1/models/{model}/deployments`: create (queues a build), list, get, rename, deactivate,
activate, retry, promote, delete, prune.

`"development": true` creates the model's development deployment (named `development`, no
version, never production, one replica, scaled to zero when idle) or answers the one that
exists (200): unchanged when it already runs - or is on its way to run - the pushed tree;
staged when it serves or sleeps and the pushed tree is another (the tree becomes its pending
patch point, synced by the next `.../patches/sync`: a patch, or a rebuild while the old code
serves); otherwise (a failed build, deactivated, still building) rebuilt in place from the
pushed tree, same id, its replica stopped.

A deployment's `config` column holds what the control plane needs later, not config.yaml:
the secret names its replicas receive, whether it becomes production once ACTIVE, and the
config's `model_metadata` (the model page's type and framework).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from truss_cli.config import load_config
from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane import instant_promotion
from truss_cli.controlplane.routes.environments import promoted_view
from truss_cli.controlplane.routes.views import deployment_view, plane_of
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.store import Conflict, Deployment, Removed, states, versions
from truss_cli.controlplane.store.deployments import DEVELOPMENT, PRODUCTION
from truss_cli.controlplane.store.patch_points import StaleBase
from truss_cli.controlplane.store.models import MAX_README_CHARS

router = APIRouter(dependencies=[Depends(require_admin)])

README = "README.md"
ACTIVATING_LINE = "activating from the stored build (no rebuild)"


class CreateDeployment(BaseModel):
    tree_hash: str
    deployment_name: Optional[str] = None
    labels: dict[str, Any] = Field(default_factory=dict)
    promote: bool = False
    preserve_previous_production_deployment: bool = False
    version_bump: Optional[str] = None  # MINOR when not given
    development: bool = False
    environment: Optional[str] = None


class EditDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Optional[str] = None
    labels: Optional[dict[str, Any]] = None


class Prune(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: int
    dry_run: bool = False


def _readme(tree: Path) -> str:
    """The tree's README.md, which a new model starts with ("" without one)."""
    path = tree / README
    if not path.is_file():
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(MAX_README_CHARS)


def _json_safe(value: Any) -> Any:
    # YAML can hold dates and other types JSON cannot; the column keeps what JSON can say.
    return json.loads(json.dumps(value, default=str))


def _development_conflicts(body: CreateDeployment) -> list[str]:
    """The options a development push cannot take (Truss refuses them with --watch too)."""
    conflicts = []
    if body.deployment_name is not None:
        conflicts.append("deployment_name (--deployment-name): it is always named 'development'")
    if body.promote:
        conflicts.append("promote (--promote): it never serves production")
    if body.environment is not None:
        conflicts.append("environment (--environment): it belongs to no environment")
    if body.version_bump is not None:
        conflicts.append("version_bump: it has no version")
    if body.preserve_previous_production_deployment:
        conflicts.append("preserve_previous_production_deployment: it never serves production")
    return conflicts


def _create(plane: ControlPlane, model_ref: str, body: CreateDeployment) -> tuple[dict[str, Any], int]:
    """-> (the deployment's view, 201 created | 200 an existing development deployment)."""
    store = plane.store
    if body.development:
        conflicts = _development_conflicts(body)
        if conflicts:
            raise ApiError(400, "DEVELOPMENT_OPTION_CONFLICT",
                           "a development deployment cannot take " + "; ".join(conflicts),
                           "drop these options, or push a published deployment (without development)")
    version_bump = body.version_bump or versions.MINOR
    versions.check_bump(version_bump)
    tree = plane.trees.tree(body.tree_hash)  # 404 when never uploaded
    config = load_config(tree).config  # a bad config -> 400 naming the key
    secret_names = sorted(config.secrets)
    into = body.environment or (PRODUCTION if body.promote else None)
    if into not in (None, PRODUCTION) and not body.development:
        existing = store.models.find(model_ref)
        if existing is None:
            raise ApiError(404, "NOT_FOUND", f"model {model_ref} is new: it has no environment {into!r} yet",
                           "push without --environment first, then: truss environments create --model "
                           f"{model_ref} {into}")
        store.environments.get(existing.id, into)  # an unknown one -> 404 naming those that exist
    model = store.models.get_or_create(model_ref, readme=_readme(tree))[0]
    row_config = {"secret_names": secret_names, "promote_when_active": into is not None,
                  # Not pushed into an environment: production, if it still serves nothing once
                  # this is ACTIVE (a model's first deployment; or the next after one that failed).
                  "production_if_empty": into is None,
                  "model_metadata": _json_safe(dict(config.model_metadata or {}))}
    if into is not None:
        # Read by Deployments.promote when the reconciler promotes it once ACTIVE; the cleanup
        # choice is for the promotion (preserve: keep the previous deployment running).
        row_config["promote_environment"] = into
        row_config["scale_down_previous_deployment"] = False if body.preserve_previous_production_deployment else None
    status, action = 201, "created"
    if body.development:
        deployment, action = _development(plane, model.id, body, row_config)
        status = 201 if action == "created" else 200
    else:
        deployment = store.deployments.create(
            model.id, archive_sha256=body.tree_hash, name=body.deployment_name, labels=body.labels,
            config=row_config, version_bump=version_bump,
            # Production only once ACTIVE (become_active, or the promotion once ACTIVE): a first
            # deployment that fails must not be what production serves.
            first_becomes_production=False,
        )
        store.builds.queue(deployment.id)
    _, missing = store.secrets.resolve(secret_names)
    view = deployment_view(plane, store.deployments.get_by_id(deployment.id))
    view["warnings"] = [f"secret {name} is not set on this remote: truss secrets set {name}" for name in missing]
    if body.development:
        view["action"] = action
    return view, status


# A development push of another tree is staged as a patch (not rebuilt in place) when the
# deployment runs a replica that can take it, or will start one at the staged tree.
_PATCHABLE_WHEN = frozenset({states.ACTIVE, states.UNHEALTHY, states.SCALED_TO_ZERO, states.WAKING_UP})
_UNCHANGED_WHEN = frozenset({states.BUILDING, states.DEPLOYING, states.LOADING_MODEL, states.ACTIVE, states.UNHEALTHY,
                             states.SCALED_TO_ZERO, states.WAKING_UP})


def _development(plane: ControlPlane, model_id: str, body: CreateDeployment,
                 row_config: dict[str, Any]) -> tuple[Deployment, str]:
    """Create, keep, stage or rebuild the model's development deployment -> (it, created | unchanged | staged | rebuilding)."""
    store = plane.store
    existing = store.deployments.find(model_id, DEVELOPMENT)
    if existing is None:
        try:
            created = store.deployments.create(model_id, archive_sha256=body.tree_hash, labels=body.labels,
                                               config=row_config, is_development=True, desired_replicas=1)
        except Conflict:  # another development push created it at the same time: answer that one
            existing = store.deployments.get(model_id, DEVELOPMENT)
        else:
            store.builds.queue(created.id)
            return created, "created"
    if (body.tree_hash == existing.current_tree and existing.desired_state == states.DESIRED_ACTIVE
            and existing.status in _UNCHANGED_WHEN):
        return existing, "unchanged"
    staged = _stage_pushed_tree(plane, existing, body.tree_hash)
    if staged is not None:
        return staged, "staged"
    rebuilt = store.deployments.rebuild_development(existing.id, archive_sha256=body.tree_hash, config=row_config,
                                                    labels=body.labels)
    _log(plane, existing.id, f"rebuilding from the pushed tree {body.tree_hash[:12]} (was {(existing.archive_sha256 or '')[:12]},"
                             f" {existing.status})")
    return rebuilt, "rebuilding"


def _stage_pushed_tree(plane: ControlPlane, existing: Deployment, tree_hash: str) -> Optional[Deployment]:
    """A development deployment that serves (or sleeps) takes a pushed tree as a patch: it is
    staged over its current tree, and the next sync (`truss push --watch` asks for it at once)
    patches it in — a hot swap, a restart, new requirements, or a rebuild while the old code
    serves — instead of stopping the replica for a rebuild in place. None: it cannot (it does
    not serve, or the tree is not stored); the caller then rebuilds it in place."""
    if existing.desired_state != states.DESIRED_ACTIVE or existing.status not in _PATCHABLE_WHEN:
        return None
    if existing.current_tree is None or plane.trees.manifest(tree_hash) is None:
        return None
    try:
        staged = plane.store.patch_points.stage(existing.id, existing.current_tree, tree_hash)
    except StaleBase:  # a patch landed meanwhile: the push then rebuilds, as without patches
        return None
    _log(plane, existing.id, f"staged the pushed tree {tree_hash[:12]} over {existing.current_tree[:12]}: "
                             "the next sync patches it in")
    return staged


def _deployment(plane: ControlPlane, model_ref: str, deployment_ref: str) -> Deployment:
    model = plane.store.models.get(model_ref)
    return plane.store.deployments.get(model.id, deployment_ref)


def _log(plane: ControlPlane, deployment_id: str, text: str) -> None:
    """A line in the deployment's log (the build log `truss logs` shows beside the replicas')."""
    path = build_log_path(plane.store, deployment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with LogFile(path) as log:
        log(text)


@router.post("/v1/models/{model_ref}/deployments", status_code=201)
async def create_deployment(request: Request, model_ref: str, body: CreateDeployment) -> JSONResponse:
    plane = plane_of(request)
    view, status = await asyncio.to_thread(_create, plane, model_ref, body)
    plane.builds.wake()
    if body.development:
        await plane.reconciler.refresh()  # a rebuilt one stops routing to its old replica now
    return JSONResponse(view, status_code=status)


@router.get("/v1/models/{model_ref}/deployments")
async def list_deployments(request: Request, model_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def listing() -> list[dict[str, Any]]:
        model = plane.store.models.get(model_ref)
        return [deployment_view(plane, d) for d in plane.store.deployments.list(model.id)]

    return {"deployments": await asyncio.to_thread(listing)}


@router.get("/v1/models/{model_ref}/deployments/{deployment_ref}")
async def get_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)
    return await asyncio.to_thread(lambda: deployment_view(plane, _deployment(plane, model_ref, deployment_ref)))


@router.patch("/v1/models/{model_ref}/deployments/{deployment_ref}")
async def edit_deployment(request: Request, model_ref: str, deployment_ref: str, body: EditDeployment) -> dict[str, Any]:
    plane = plane_of(request)

    def edit() -> dict[str, Any]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        if body.name is not None:
            deployment = plane.store.deployments.rename(deployment.id, body.name)
        if body.labels is not None:
            deployment = plane.store.deployments.set_labels(deployment.id, body.labels)
        return deployment_view(plane, deployment)

    view = await asyncio.to_thread(edit)
    await plane.reconciler.refresh()  # an inactive one's 404 names it by its new name
    return view


@router.post("/v1/models/{model_ref}/deployments/prune")
async def prune_deployments(request: Request, model_ref: str, body: Prune) -> dict[str, Any]:
    plane = plane_of(request)

    def prune() -> tuple[Removed, list[Deployment]]:
        model = plane.store.models.get(model_ref)
        if body.dry_run:
            return plane.store.deployments.prune(model.id, body.keep, dry_run=True)
        kept: list[Deployment] = []

        def delete() -> Removed:
            removed, still = plane.store.deployments.prune(model.id, body.keep)
            kept.extend(still)
            return removed

        return plane.reconciler.remove(delete), kept

    removed, kept = await asyncio.to_thread(prune)
    if not body.dry_run:
        await plane.forget_and_release(removed)
    return {"deleted": [{"id": d.id, "name": d.name} for d in removed.deployments],
            "kept": [{"id": d.id, "name": d.name} for d in kept], "dry_run": body.dry_run}


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/deactivate")
async def deactivate_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)
    deployment = await asyncio.to_thread(
        lambda: plane.store.deployments.deactivate(_deployment(plane, model_ref, deployment_ref).id)
    )
    # Its paths answer 404 DEPLOYMENT_INACTIVE from now on; a worker thread stops the replicas.
    await plane.reconciler.refresh()
    return await asyncio.to_thread(deployment_view, plane, deployment)


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/activate")
async def activate_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def activate() -> Deployment:
        deployment, changed = plane.store.deployments.activate(_deployment(plane, model_ref, deployment_ref).id)
        if changed:
            _log(plane, deployment.id, ACTIVATING_LINE)
        return deployment

    deployment = await asyncio.to_thread(activate)
    await plane.reconciler.refresh()  # starts its replicas
    return await asyncio.to_thread(deployment_view, plane, deployment)


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/retry")
async def retry_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def retry() -> dict[str, Any]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        plane.store.builds.retry(deployment.id)
        _log(plane, deployment.id, "retrying: building again from the stored tree")
        return deployment_view(plane, plane.store.deployments.get_by_id(deployment.id))

    view = await asyncio.to_thread(retry)
    plane.builds.wake()
    return view


class PromoteDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = PRODUCTION
    scale_down_previous_deployment: Optional[bool] = None  # None: the environment's cleanup strategy


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/promote")
async def promote_deployment(request: Request, model_ref: str, deployment_ref: str,
                             body: Optional[PromoteDeployment] = None) -> JSONResponse:
    """Into `environment` (production when no body): instant for now, the previous deployment
    cleaned up per the environment's promotion_cleanup_strategy (instant_promotion.py).
    The development deployment is published instead: a new deployment that becomes production
    once ACTIVE (201)."""
    plane = plane_of(request)
    body = body or PromoteDeployment()

    def promote() -> tuple[dict[str, Any], int]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        if deployment.is_development:
            if body.environment != PRODUCTION:
                raise ApiError(409, "NOT_PROMOTABLE",
                               f"the development deployment is published into production only, not {body.environment}",
                               f"promote the published deployment into {body.environment} once it is ACTIVE")
            return deployment_view(plane, _publish_development(plane, deployment)), 201
        promoted = instant_promotion.promote(plane.store, deployment.model_id, body.environment, deployment.id,
                                             scale_down_previous=body.scale_down_previous_deployment)
        return promoted_view(plane, promoted), 200

    answer, status = await asyncio.to_thread(promote)
    if status == 201:
        plane.builds.wake()
    await plane.reconciler.refresh()  # the environment's traffic goes to it from now on
    return JSONResponse(answer, status_code=status)


def _publish_development(plane: ControlPlane, development: Deployment) -> Deployment:
    """Promoting the development deployment: a new published deployment built from the tree
    its replica runs (patches included), which becomes production once ACTIVE."""
    tree_hash = development.running_tree
    if not tree_hash:
        raise ApiError(409, "NOT_PROMOTABLE", "the development deployment has no tree yet", None)
    config = load_config(plane.trees.tree(tree_hash)).config
    row_config = {"secret_names": sorted(config.secrets), "promote_when_active": True,
                  "model_metadata": _json_safe(dict(config.model_metadata or {}))}
    created = plane.store.deployments.create(development.model_id, archive_sha256=tree_hash,
                                             labels=dict(development.labels), config=row_config,
                                             version_bump=versions.MINOR, first_becomes_production=False)
    plane.store.builds.queue(created.id)
    _log(plane, created.id, f"built from the development deployment's tree {tree_hash[:12]} (promote development)")
    return created


@router.delete("/v1/models/{model_ref}/deployments/{deployment_ref}")
async def delete_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> tuple[str, Removed]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        return deployment.id, plane.reconciler.remove(lambda: plane.store.deployments.delete(deployment.id))

    deployment_id, removed = await asyncio.to_thread(delete)
    await plane.forget_and_release(removed)
    return {"id": deployment_id, "deleted": True}

