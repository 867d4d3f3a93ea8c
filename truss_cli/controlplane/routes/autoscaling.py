"""`/v1/models/{model}/deployments/{deployment}/autoscaling_settings`: read and update a
deployment's autoscaling settings (Baseten's fields; issue 11).

PATCH takes any subset of the fields and keeps the others; it answers `ACCEPTED` (stored, and
applied by a reconciler tick before the answer: no redeploy, no restart of a serving
replica) or `UNCHANGED`, with the settings as they now are, and `waking_up`: whether raising
`min_replica` woke the deployment from zero (min_replica_wake.py). A field that is unknown or
out of range is refused (400 naming it and its range), and nothing is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Request

from truss_cli.controlplane import autoscaling_settings, min_replica_wake
from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import Deployment

router = APIRouter(dependencies=[Depends(require_admin)])

PATH = "/v1/models/{model_ref}/deployments/{deployment_ref}/autoscaling_settings"


def _deployment(plane: ControlPlane, model_ref: str, deployment_ref: str) -> Deployment:
    model = plane.store.models.get(model_ref)
    return plane.store.deployments.get(model.id, deployment_ref)


def _view(plane: ControlPlane, deployment: Deployment, own: Any) -> dict[str, Any]:
    environment = plane.store.autoscaling.all_inputs().get(deployment.id, (own, None))[1]
    return {
        "deployment_id": deployment.id,
        "autoscaling_settings": autoscaling_settings.parse(own).model_dump(),
        # What the autoscaler applies: the serving environment's own settings win.
        "effective_autoscaling_settings": autoscaling_settings.effective(own, environment).model_dump(),
    }


def _refuse_development(deployment: Deployment) -> None:
    if deployment.is_development:
        raise ApiError(400, "DEVELOPMENT_AUTOSCALING",
                       "the development deployment keeps one replica and scales to zero when idle; its "
                       "autoscaling settings cannot change",
                       "promote it (truss deployments promote ... development) and set the published one's")


def _errors(exc: autoscaling_settings.ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "autoscaling_settings"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)


@router.get(PATH)
async def get_autoscaling_settings(request: Request, model_ref: str, deployment_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def read() -> dict[str, Any]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        return _view(plane, deployment, plane.store.autoscaling.get(deployment.id))

    return await asyncio.to_thread(read)


@router.patch(PATH)
async def patch_autoscaling_settings(request: Request, model_ref: str, deployment_ref: str,
                                     changes: dict[str, Any] = Body(...)) -> dict[str, Any]:
    plane = plane_of(request)

    def update() -> tuple[bool, list[str], dict[str, Any]]:
        deployment = _deployment(plane, model_ref, deployment_ref)
        _refuse_development(deployment)
        stored = plane.store.autoscaling.get(deployment.id)
        try:
            after, changed = autoscaling_settings.updated(stored, changes)
        except autoscaling_settings.ValidationError as exc:
            known = ", ".join(autoscaling_settings.AutoscalingSettings.model_fields)
            raise ApiError(400, "INVALID_AUTOSCALING_SETTINGS", _errors(exc), f"fields: {known}") from None
        except ValueError as exc:
            raise ApiError(400, "INVALID_AUTOSCALING_SETTINGS", str(exc), None) from None
        woken: list[str] = []
        if changed:
            floors = min_replica_wake.floors(plane.store)
            plane.store.autoscaling.set(deployment.id, after.model_dump())
            woken = min_replica_wake.wake_raised(plane.store, floors, plane.reconciler.development.request_wake)
        return changed, woken, _view(plane, deployment, after.model_dump())

    changed, woken, view = await asyncio.to_thread(update)
    if changed:  # applied by a tick before the answer (a wake: WAKING_UP in the store)
        await plane.reconciler.refresh()
    return {"status": "ACCEPTED" if changed else "UNCHANGED", **view, "waking_up": bool(woken)}
