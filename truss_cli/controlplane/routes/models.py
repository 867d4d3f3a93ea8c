"""`/v1/models`: list, get (by id or name), edit the description and README, delete (stops its
replicas and frees what its deployments held).

An invoke key may GET a model it may call, and sees only its id and name: enough for `truss
predict --model NAME` to find the id the gateway's paths take.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Request

from truss_cli.controlplane.auth import require_admin, require_key
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.routes.views import base_url_of, model_detail, model_views, plane_of
from truss_cli.controlplane.store import ApiKey, NotFound

router = APIRouter(dependencies=[Depends(require_admin)])
# Routes an invoke key may call too; each decides by the key's scope.
readable = APIRouter()

_EDITABLE = ("description", "readme")


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    plane = plane_of(request)
    return {"models": await asyncio.to_thread(lambda: model_views(plane, plane.store.models.list()))}


@readable.get("/v1/models/{model_ref}")
async def get_model(request: Request, model_ref: str, key: ApiKey = Depends(require_key)) -> dict[str, Any]:
    plane = plane_of(request)
    if key.is_admin:
        base_url = base_url_of(request)
        return await asyncio.to_thread(lambda: model_detail(plane, plane.store.models.get(model_ref), base_url))

    def invocable() -> dict[str, Any]:
        model = plane.store.models.find(model_ref)
        if model is None:
            # Only the models this key may call: an invoke key learns nothing of the others.
            mine = [f"{m.name} ({m.id})" for m in plane.store.models.list() if key.may_invoke(m.name)]
            raise NotFound("model", model_ref, mine)
        if not key.may_invoke(model.name):
            raise ApiError(403, "FORBIDDEN", "this API key may not call this model", {"scope": key.scope})
        return {"id": model.id, "name": model.name}

    return await asyncio.to_thread(invocable)


@router.patch("/v1/models/{model_ref}")
async def edit_model(request: Request, model_ref: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    if "name" in body:
        raise ApiError(400, "NAME_NOT_EDITABLE", "a model's name cannot be changed",
                       "push to a new model name instead: truss push --model-name NAME")
    unknown = sorted(set(body) - set(_EDITABLE))
    if unknown:
        raise ApiError(400, "BAD_REQUEST", f"cannot edit {', '.join(unknown)}", {"editable": list(_EDITABLE)})
    for field in _EDITABLE:
        if field in body and not isinstance(body[field], str):
            raise ApiError(400, "BAD_REQUEST", f"{field} must be a string", {"editable": list(_EDITABLE)})
    plane = plane_of(request)
    base_url = base_url_of(request)

    def edit() -> dict[str, Any]:
        model = plane.store.models.get(model_ref)
        model = plane.store.models.describe(model.id, description=body.get("description"), readme=body.get("readme"))
        return model_detail(plane, model, base_url)

    return await asyncio.to_thread(edit)


@router.delete("/v1/models/{model_ref}")
async def delete_model(request: Request, model_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> Any:
        model = plane.store.models.get(model_ref)
        return model.id, plane.reconciler.remove(lambda: plane.store.models.delete(model.id))

    model_id, removed = await asyncio.to_thread(delete)
    await plane.forget_and_release(removed)
    return {"id": model_id, "deleted": True}
