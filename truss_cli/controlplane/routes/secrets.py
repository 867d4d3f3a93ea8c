"""`/v1/secrets`: names and dates only; a value goes in, never out (not even in a log)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.routes.views import plane_of

router = APIRouter(dependencies=[Depends(require_admin)])


class SetSecret(BaseModel):
    name: str
    value: str = Field(repr=False)


@router.get("/v1/secrets")
async def list_secrets(request: Request) -> dict[str, Any]:
    infos = await asyncio.to_thread(plane_of(request).store.secrets.list)
    return {"secrets": [{"name": s.name, "created_at": s.created_at.isoformat(), "updated_at": s.updated_at.isoformat()}
                        for s in infos]}


@router.post("/v1/secrets")
async def set_secret(request: Request, body: SetSecret) -> dict[str, Any]:
    info = await asyncio.to_thread(plane_of(request).store.secrets.set, body.name, body.value)
    return {"name": info.name}


@router.delete("/v1/secrets/{name}")
async def delete_secret(request: Request, name: str) -> dict[str, Any]:
    await asyncio.to_thread(plane_of(request).store.secrets.delete, name)
    return {"name": name, "deleted": True}
