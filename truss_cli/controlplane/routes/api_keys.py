"""`/v1/api_keys`: create (the plaintext is in this one response only), list, revoke."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import ApiKey
from truss_cli.controlplane.store import states

router = APIRouter(dependencies=[Depends(require_admin)])


class CreateKey(BaseModel):
    scope: str = states.SCOPE_ADMIN
    models: list[str] = Field(default_factory=list)
    name: Optional[str] = None


def key_view(key: ApiKey) -> dict[str, Any]:
    return {"prefix": key.prefix, "scope": key.scope, "models": list(key.models), "name": key.name,
            "created_at": key.created_at.isoformat(),
            "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None}


@router.post("/v1/api_keys", status_code=201)
async def create_key(request: Request, body: CreateKey) -> JSONResponse:
    if body.scope not in states.SCOPES:
        raise ApiError(400, "BAD_SCOPE", f"scope {body.scope!r}: choose one of {', '.join(sorted(states.SCOPES))}")
    created = await asyncio.to_thread(plane_of(request).store.api_keys.create, body.scope, body.models, body.name)
    view = key_view(created.key)
    view.pop("last_used_at")
    return JSONResponse({"key": created.plaintext, **view}, status_code=201)


@router.get("/v1/api_keys")
async def list_keys(request: Request) -> dict[str, Any]:
    keys = await asyncio.to_thread(plane_of(request).store.api_keys.list)
    return {"api_keys": [key_view(k) for k in keys]}


@router.delete("/v1/api_keys/{prefix}")
async def revoke_key(request: Request, prefix: str) -> dict[str, Any]:
    key = await asyncio.to_thread(plane_of(request).store.api_keys.revoke, prefix)
    return {"prefix": key.prefix, "revoked": True}
