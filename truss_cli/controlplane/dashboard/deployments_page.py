"""A model's Deployments tab, `/models/{id}/deployments`: a table of its deployments with the
actions the management API offers on each (promote, deactivate, activate, rename, retry,
delete). The page only reads; every button calls /v1 (static/dashboard.js sends it, shows a
refusal in #action-error as the server words it, reloads on success). Which buttons a row
shows follows what the API would accept, so a user is not offered what is sure to be refused;
the API still decides (a refusal is shown as it comes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import status_label
from truss_cli.controlplane.store import Deployment, Model, states
from truss_cli.controlplane.store.deployments import PRODUCTION

router = APIRouter(include_in_schema=False)

_FAILED = frozenset({states.BUILD_FAILED, states.DEPLOY_FAILED})
_UNBUILT = frozenset({states.BUILDING, states.BUILD_FAILED})


@dataclass(frozen=True)
class DeploymentRow:
    id: str
    name: str
    version: Optional[str]
    status: str  # the precise status (the store's word), also the badge's colour
    status_label: str  # Baseten's word
    status_detail: Optional[str]
    environment: Optional[str]
    is_production: bool
    is_development: bool
    ready_replicas: int
    desired_replicas: int
    created: str
    can_deactivate: bool
    can_activate: bool
    can_retry: bool
    promote_into: list[str]  # the environments (besides production) it may be promoted into: not the one it is in


@dataclass(frozen=True)
class DeploymentsTab:
    model: Model
    rows: list[DeploymentRow]
    environments: list[str]  # the model's environments besides production: the promote select's choices


def deployments_tab(plane: ControlPlane, model_id: str) -> Optional[DeploymentsTab]:
    """None when no model has this id (links use ids: a name is not looked up)."""
    store = plane.store
    model = store.models.find(model_id)
    if model is None or model.id != model_id:
        return None
    deployments = store.deployments.list(model.id)
    environments = [e.name for e in store.environments.list(model.id) if e.name != PRODUCTION]
    return DeploymentsTab(model, [_row(plane, d, environments) for d in deployments], environments)


def _row(plane: ControlPlane, deployment: Deployment, environments: list[str]) -> DeploymentRow:
    ready = sum(1 for r in plane.store.replicas.list(deployment.id) if r.phase == "ready")
    inactive = deployment.desired_state == states.DESIRED_INACTIVE
    return DeploymentRow(
        id=deployment.id, name=deployment.name, version=deployment.version,
        status=deployment.status, status_label=status_label(deployment.status),
        status_detail=deployment.status_detail,
        environment=deployment.environment or (PRODUCTION if deployment.is_production else None),
        is_production=deployment.is_production, is_development=deployment.is_development,
        # An inactive deployment wants no replica, whatever count it will come back with.
        ready_replicas=ready, desired_replicas=0 if inactive else deployment.desired_replicas,
        created=deployment.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        can_deactivate=not inactive and deployment.status not in _UNBUILT,
        # Not while DEACTIVATING: the API refuses until its replicas have stopped (INACTIVE).
        can_activate=inactive and deployment.status == states.INACTIVE,
        can_retry=deployment.status in _FAILED,
        # The development deployment is published into production only (the API refuses the rest).
        promote_into=[] if deployment.is_development else [e for e in environments if e != deployment.environment],
    )


@router.get("/models/{model_id}/deployments")
async def deployments_page(request: Request, model_id: str) -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    tab = await asyncio.to_thread(deployments_tab, request.app.state.plane, model_id)
    csrf = current.session.csrf_token
    if tab is None:
        return model_not_found(model_id, csrf)
    return render("model_deployments.html", model=tab.model, tab="deployments", rows=tab.rows,
                  environments=tab.environments, csrf_token=csrf, page="models")
