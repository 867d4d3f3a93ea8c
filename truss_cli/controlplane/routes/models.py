"""`/v1/models`: list, get (by id or name), delete (stops its replicas, forgets its deployments)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.routes.views import model_view, plane_of

router = APIRouter(dependencies=[Depends(require_admin)])


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    plane = plane_of(request)
    return {"models": await asyncio.to_thread(lambda: [model_view(plane, m) for m in plane.store.models.list()])}


@router.get("/v1/models/{model_ref}")
async def get_model(request: Request, model_ref: str) -> dict[str, Any]:
    plane = plane_of(request)
    return await asyncio.to_thread(lambda: model_view(plane, plane.store.models.get(model_ref)))


@router.delete("/v1/models/{model_ref}")
async def delete_model(request: Request, model_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> str:
        model = plane.store.models.get(model_ref)
        for deployment in plane.store.deployments.list(model.id):
            plane.reconciler.stop_deployment(deployment.id)
        plane.store.models.delete(model.id)
        return model.id

    model_id = await asyncio.to_thread(delete)
    plane.reconciler.wake()
    return {"id": model_id, "deleted": True}
