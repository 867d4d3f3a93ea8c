"""`/v1/models/{model}/deployments`: create (queues a build), list, get, rename, deactivate,
activate, retry, promote, delete, prune.

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
from truss_cli.controlplane.routes.views import deployment_view, plane_of
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Removed, versions
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
    version_bump: str = versions.MINOR


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


def _create(plane: ControlPlane, model_ref: str, body: CreateDeployment) -> dict[str, Any]:
    store = plane.store
    versions.check_bump(body.version_bump)
    tree = plane.trees.tree(body.tree_hash)  # 404 when never uploaded
    config = load_config(tree).config  # a bad config -> 400 naming the key
    secret_names = sorted(config.secrets)
    model = store.models.get_or_create(model_ref, readme=_readme(tree))[0]
    deployment = store.deployments.create(
        model.id, archive_sha256=body.tree_hash, name=body.deployment_name, labels=body.labels,
        config={"secret_names": secret_names, "promote_when_active": body.promote,
                "model_metadata": _json_safe(dict(config.model_metadata or {}))},
        version_bump=body.version_bump,
    )
    store.builds.queue(deployment.id)
    _, missing = store.secrets.resolve(secret_names)
    view = deployment_view(plane, deployment)
    view["warnings"] = [f"secret {name} is not set on this remote: truss secrets set {name}" for name in missing]
    return view


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
    view = await asyncio.to_thread(_create, plane, model_ref, body)
    plane.builds.wake()
    return JSONResponse(view, status_code=201)


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


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/promote")
async def promote_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)
    deployment = await asyncio.to_thread(
        lambda: plane.store.deployments.promote(_deployment(plane, model_ref, deployment_ref).id)
    )
    await plane.reconciler.refresh()  # production traffic goes to it from now on
    return await asyncio.to_thread(deployment_view, plane, deployment)


@router.delete("/v1/models/{model_ref}/deployments/{deployment_ref}")
async def delete_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> tuple[str, Removed]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        return deployment.id, plane.reconciler.remove(lambda: plane.store.deployments.delete(deployment.id))

    deployment_id, removed = await asyncio.to_thread(delete)
    await plane.forget_and_release(removed)
    return {"id": deployment_id, "deleted": True}

