"""`/v1/models/{model}/environments`: list, create, get, update (settings, partially), delete,
activate / deactivate (the deployment it serves), promote a deployment into it.

Every model has `production`, which cannot be created or deleted. An environment's endpoint is
`/model-{id}/environments/{name}/predict` (production's also `/model-{id}/production/predict`);
the gateway routes it from the environments table (controlplane/targets.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from truss_cli.controlplane import instant_promotion, min_replica_wake
from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.promotions import promotion_view
from truss_cli.controlplane.routes.views import deployment_view, environment_view, plane_of
from truss_cli.controlplane.store.environments import Environment

router = APIRouter(dependencies=[Depends(require_admin)])


class CreateEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    autoscaling_settings: Optional[dict[str, Any]] = None
    promotion_settings: Optional[dict[str, Any]] = None


class UpdateEnvironment(BaseModel):
    """Fields left out stay as they are; `autoscaling_settings: null` goes back to each
    deployment's own settings."""

    model_config = ConfigDict(extra="forbid")

    autoscaling_settings: Optional[dict[str, Any]] = None
    promotion_settings: Optional[dict[str, Any]] = None


class PromoteIntoEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment_id: str  # an id or a name
    scale_down_previous_deployment: Optional[bool] = None  # None: the environment's cleanup strategy


def view(plane: ControlPlane, environment: Environment) -> dict[str, Any]:
    promotion = plane.store.environments.unfinished_promotions(environment.model_id).get(environment.id)
    return environment_view(plane, environment, promotion)


def promoted_view(plane: ControlPlane, promoted: instant_promotion.Promoted) -> dict[str, Any]:
    """The promoted deployment's view, with the environment and what happened to the one it replaced."""
    answer = deployment_view(plane, promoted.deployment)
    answer["promoted_into"] = promoted.environment.name
    answer["previous_deployment"] = None if promoted.previous is None else {
        "id": promoted.previous.id, "name": promoted.previous.name,
        "cleanup": promoted.cleanup.value if promoted.cleanup else None,
    }
    if promoted.promotion is not None:  # rolling or canary: under way, follow it with `truss rollout status`
        answer["in_progress_promotion"] = promotion_view(plane.store, promoted.environment.name, promoted.promotion)
    return answer


def _environment(plane: ControlPlane, model_ref: str, name: str) -> Environment:
    model = plane.store.models.get(model_ref)
    return plane.store.environments.get(model.id, name)


@router.get("/v1/models/{model_ref}/environments")
async def list_environments(request: Request, model_ref: str) -> dict[str, Any]:
    plane = plane_of(request)

    def listing() -> list[dict[str, Any]]:
        model = plane.store.models.get(model_ref)
        return [view(plane, environment) for environment in plane.store.environments.list(model.id)]

    return {"environments": await asyncio.to_thread(listing)}


@router.post("/v1/models/{model_ref}/environments", status_code=201)
async def create_environment(request: Request, model_ref: str, body: CreateEnvironment) -> dict[str, Any]:
    plane = plane_of(request)

    def create() -> dict[str, Any]:
        model = plane.store.models.get(model_ref)
        return view(plane, plane.store.environments.create(model.id, body.name, body.autoscaling_settings,
                                                           body.promotion_settings))

    created = await asyncio.to_thread(create)
    await plane.reconciler.refresh()  # its endpoint answers ENVIRONMENT_EMPTY from now on, not 404 unknown
    return created


@router.get("/v1/models/{model_ref}/environments/{name}")
async def get_environment(request: Request, model_ref: str, name: str) -> dict[str, Any]:
    plane = plane_of(request)
    return await asyncio.to_thread(lambda: view(plane, _environment(plane, model_ref, name)))


@router.patch("/v1/models/{model_ref}/environments/{name}")
async def update_environment(request: Request, model_ref: str, name: str, body: UpdateEnvironment) -> dict[str, Any]:
    plane = plane_of(request)
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    if not changes:
        raise ApiError(400, "NOTHING_TO_UPDATE", "give autoscaling_settings and/or promotion_settings", None)

    def update() -> tuple[bool, dict[str, Any]]:
        model = plane.store.models.get(model_ref)
        floors = min_replica_wake.floors(plane.store)
        environment, changed = plane.store.environments.update(model.id, name, **changes)
        # Its min_replica raised: the deployment it serves, if at zero, wakes to it.
        woken = min_replica_wake.wake_raised(plane.store, floors, plane.reconciler.development.request_wake) if changed else []
        return changed, {**view(plane, environment), "status": "ACCEPTED" if changed else "UNCHANGED",
                         "waking_up": bool(woken)}

    changed, answer = await asyncio.to_thread(update)
    if changed:  # applied by a tick before the answer (a wake: WAKING_UP in the store)
        await plane.reconciler.refresh()
    return answer


@router.delete("/v1/models/{model_ref}/environments/{name}")
async def delete_environment(request: Request, model_ref: str, name: str) -> dict[str, Any]:
    plane = plane_of(request)

    def delete() -> Environment:
        model = plane.store.models.get(model_ref)
        return plane.store.environments.delete(model.id, name)

    deleted = await asyncio.to_thread(delete)
    await plane.reconciler.refresh()  # its endpoint answers 404 from now on
    return {"name": deleted.name, "model_id": deleted.model_id, "deleted": True}


def _current(plane: ControlPlane, model_ref: str, name: str, action: str) -> Environment:
    environment = _environment(plane, model_ref, name)
    if environment.current_deployment_id is None:
        raise ApiError(409, "ENVIRONMENT_EMPTY", f"environment {name} serves no deployment: nothing to {action}",
                       f"promote one into it first: truss deployments promote --model {model_ref} DEPLOYMENT "
                       f"--environment {name}")
    return environment


@router.post("/v1/models/{model_ref}/environments/{name}/activate")
async def activate_environment(request: Request, model_ref: str, name: str) -> dict[str, Any]:
    """Activate the deployment the environment serves (from its stored build, no rebuild)."""
    plane = plane_of(request)

    def activate() -> dict[str, Any]:
        environment = _current(plane, model_ref, name, "activate")
        plane.store.deployments.activate(environment.current_deployment_id)
        return view(plane, environment)

    answer = await asyncio.to_thread(activate)
    await plane.reconciler.refresh()
    return answer


@router.post("/v1/models/{model_ref}/environments/{name}/deactivate")
async def deactivate_environment(request: Request, model_ref: str, name: str) -> dict[str, Any]:
    """Deactivate the deployment the environment serves (its endpoint answers 404 meanwhile)."""
    plane = plane_of(request)

    def deactivate() -> dict[str, Any]:
        environment = _current(plane, model_ref, name, "deactivate")
        plane.store.deployments.deactivate(environment.current_deployment_id)
        return view(plane, environment)

    answer = await asyncio.to_thread(deactivate)
    await plane.reconciler.refresh()
    return answer


@router.post("/v1/models/{model_ref}/environments/{name}/promote")
async def promote_into_environment(request: Request, model_ref: str, name: str,
                                   body: PromoteIntoEnvironment) -> JSONResponse:
    plane = plane_of(request)

    def promote() -> dict[str, Any]:
        model = plane.store.models.get(model_ref)
        deployment = plane.store.deployments.get(model.id, body.deployment_id)
        if deployment.is_development:
            raise ApiError(409, "NOT_PROMOTABLE", "the development deployment cannot be promoted into an environment",
                           f"publish it first: truss deployments promote --model {model_ref} development")
        promoted = instant_promotion.promote(plane.store, model.id, name, deployment.id,
                                             scale_down_previous=body.scale_down_previous_deployment)
        return promoted_view(plane, promoted)

    answer = await asyncio.to_thread(promote)
    await plane.reconciler.refresh()  # the environment's requests go to it from now on
    return JSONResponse(answer)
