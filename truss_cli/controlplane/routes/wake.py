"""`POST /v1/models/{model}/deployments/{deployment}/wake`: the gateway's wake route
(`POST /model-{id}/{target}/wake`, gateway/app.py) behind the management API's auth.

The gateway's route takes an API key in `Authorization` only; the dashboard's Wake button has
a session cookie instead, and every dashboard action is a /v1 call (CSRF-checked by
`require_admin`). Both call the same `RoutingTable.wake`: a deployment scaled to zero starts
waking, an awake one's idle clock starts again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.gateway.routes import UnknownTarget
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store.deployments import DEVELOPMENT

router = APIRouter(dependencies=[Depends(require_admin)])


@router.post("/v1/models/{model_ref}/deployments/{deployment_ref}/wake", status_code=202)
async def wake_deployment(request: Request, model_ref: str, deployment_ref: str) -> JSONResponse:
    plane = plane_of(request)

    def find() -> Any:
        model = plane.store.models.get(model_ref)
        return model, plane.store.deployments.get(model.id, deployment_ref)

    model, deployment = await asyncio.to_thread(find)
    target = DEVELOPMENT if deployment.is_development else f"deployment/{deployment.id}"
    woken = plane.table.wake(model.id, target)  # the loop's thread, as the gateway calls it
    if isinstance(woken, UnknownTarget):
        # Known to the store but not routed (yet): being built, or deactivated.
        raise ApiError(409, woken.error_code or "NOT_ROUTED",
                       f"deployment {deployment.name} of model {model.name} cannot be woken now: {woken.detail}",
                       {"status": deployment.status, "hint": woken.hint})
    waking = any(w for _, w in woken)
    return JSONResponse({"model_id": model.id, "deployment_id": deployment.id, "waking_up": waking},
                        status_code=202)
