"""`POST /v1/blobs/missing`: which file contents the client must send (the rest it skips)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.routes.views import plane_of

router = APIRouter(dependencies=[Depends(require_admin)])


class MissingRequest(BaseModel):
    digests: list[str]


@router.post("/v1/blobs/missing")
async def missing(request: Request, body: MissingRequest) -> dict[str, list[str]]:
    # A malformed digest is a StoreError -> 400 naming it.
    return {"missing": await asyncio.to_thread(plane_of(request).store.blobs.missing, body.digests)}
