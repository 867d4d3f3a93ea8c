"""`/v1/models/{model}/deployments`: create (queues a build), list, get, delete.

A deployment's `config` column holds what the control plane needs later, not config.yaml:
the secret names its replicas receive and whether it becomes production once ACTIVE.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from truss_cli.config import load_config
from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import deployment_view, plane_of

router = APIRouter(dependencies=[Depends(require_admin)])


class CreateDeployment(BaseModel):
    tree_hash: str
    deployment_name: Optional[str] = None
    labels: dict[str, Any] = Field(default_factory=dict)
    promote: bool = False
    preserve_previous_production_deployment: bool = False


def _create(plane: ControlPlane, model_ref: str, body: CreateDeployment) -> dict[str, Any]:
    store = plane.store
    tree = plane.trees.tree(body.tree_hash)  # 404 when never uploaded
    config = load_config(tree).config  # a bad config -> 400 naming the key
    secret_names = sorted(config.secrets)
    model = store.models.find(model_ref) or store.models.get_or_create(model_ref)[0]
    deployment = store.deployments.create(
        model.id, archive_sha256=body.tree_hash, name=body.deployment_name, labels=body.labels,
        config={"secret_names": secret_names, "promote_when_active": body.promote},
    )
    store.builds.queue(deployment.id)
    _, missing = store.secrets.resolve(secret_names)
    view = deployment_view(plane, deployment)
    view["warnings"] = [f"secret {name} is not set on this remote: truss secrets set {name}" for name in missing]
    return view


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

    def get() -> dict[str, Any]:
        model = plane.store.models.get(model_ref)
        return deployment_view(plane, plane.store.deployments.get(model.id, deployment_ref))

    return await asyncio.to_thread(get)


@router.delete("/v1/models/{model_ref}/deployments/{deployment_ref}")
async def delete_deployment(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> str:
        model = plane.store.models.get(model_ref)
        deployment = plane.store.deployments.get(model.id, deployment_ref)
        plane.reconciler.stop_deployment(deployment.id)
        plane.store.deployments.delete(deployment.id)
        return deployment.id

    deployment_id = await asyncio.to_thread(delete)
    plane.reconciler.wake()
    return {"id": deployment_id, "deleted": True}
