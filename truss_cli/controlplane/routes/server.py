"""`/v1/server`: what `truss server status` shows, and the admin's stop."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.routes.views import plane_of

router = APIRouter(dependencies=[Depends(require_admin)])


@router.get("/v1/server")
async def server_info(request: Request) -> dict[str, Any]:
    plane = plane_of(request)
    store = plane.store
    models, deployments, replicas = await asyncio.to_thread(
        lambda: (store.models.list(), store.deployments.list(), store.replicas.list())
    )
    return {
        "version": plane.version, "runtime": plane.runtime.kind, "runtime_reason": plane.runtime_reason,
        "database": store.database, "data_dir": str(store.data_dir), "models": len(models),
        "deployments": len(deployments), "replicas": sum(1 for r in replicas if r.phase != "stopped"),
        "dev_idle_seconds": plane.options.dev_idle_seconds,
    }


class StopRequest(BaseModel):
    stop_replicas: bool = False


@router.post("/v1/server/stop", status_code=202)
async def stop_server(request: Request, body: StopRequest) -> dict[str, Any]:
    plane = plane_of(request)
    if body.stop_replicas:
        await asyncio.to_thread(plane.reconciler.stop_all)
    # The same path as SIGTERM: uvicorn drains and the lifespan stops the workers.
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    return {"stopping": True, "stop_replicas": body.stop_replicas}
