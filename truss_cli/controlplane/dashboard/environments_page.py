"""A model's Environments tab, `/models/{id}/environments`: each environment (production first)
with the deployment serving it and, during a promotion, the candidate, the traffic split, the
step, the phase and its countdown, and buttons for the promotion controls.

The page only reads; the buttons call the /v1 control routes (routes/promotions.py). Each card
re-reads itself (htmx polls `/models/{id}/environments/{name}/card`): every second while its
promotion is unfinished, so the split moves live, and every few seconds when idle, so a
promotion begun after the page opened (from the CLI, say) appears without a reload. An idle
card's read is a handful of indexed rows, so the light poll costs the plane next to nothing.
The promotion is shown as `promotion_view` makes it for the API: one reading of the rollout's
state, not a second one to keep in step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane import rollout_machine as machine, rollouts
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.promotions import promotion_view
from truss_cli.controlplane.routes.views import status_label
from truss_cli.controlplane.store import Model, NotFound, states
from truss_cli.controlplane.store.deployments import PRODUCTION

router = APIRouter(include_in_schema=False)
LIVE_POLL_SECONDS = 1  # while a promotion runs: the bar and the countdown move
IDLE_POLL_SECONDS = 5  # otherwise: a promotion begun elsewhere shows within a few seconds


@dataclass(frozen=True)
class DeploymentSummary:
    id: str
    name: str
    status: str
    status_label: str
    ready_replicas: int
    wanted_replicas: int  # what the promotion asks for while one runs, else the deployment's own count


@dataclass(frozen=True)
class EnvironmentCard:
    name: str
    current: Optional[DeploymentSummary]
    promotion: Optional[dict[str, Any]]  # promotion_view: the unfinished one, else the last
    unfinished: bool  # the card polls every second while True
    percent: int  # traffic on the candidate (0..100)

    @property
    def poll_seconds(self) -> int:
        return LIVE_POLL_SECONDS if self.unfinished else IDLE_POLL_SECONDS


@dataclass(frozen=True)
class EnvironmentsTab:
    model: Model
    cards: list[EnvironmentCard]


def _summary(plane: ControlPlane, deployment_id: Optional[str], wanted: Optional[int]) -> Optional[DeploymentSummary]:
    if deployment_id is None:
        return None
    try:
        deployment = plane.store.deployments.get_by_id(deployment_id)
    except NotFound:
        return None
    inactive = deployment.desired_state == states.DESIRED_INACTIVE
    own = 0 if inactive else deployment.desired_replicas
    return DeploymentSummary(deployment.id, deployment.name, deployment.status, status_label(deployment.status),
                             rollouts.ready_replicas(plane.store, deployment.id), own if wanted is None else wanted)


def _card(plane: ControlPlane, model: Model, name: str, current_id: Optional[str]) -> EnvironmentCard:
    promotions = rollouts.promotions_of(plane.store)
    promotion = promotions.latest(promotions.environment(model.id, name).id)
    view = promotion_view(plane.store, name, promotion) if promotion else None
    unfinished = promotion is not None and promotion.status not in machine.FINISHED
    current = _summary(plane, current_id, None)
    if view is not None and unfinished:
        # During a promotion the replicas shown are the ones the rollout asks for.
        for key in ("candidate_deployment", "previous_deployment"):
            part = view.get(key)
            if part and not part.get("deleted"):
                wanted = part["rollout_replicas"]
                part["wanted_replicas"] = part["desired_replicas"] if wanted is None else wanted
                part["status_label"] = status_label(part["status"])
    percent = view["percent_traffic_to_new_version"] if view else 0
    return EnvironmentCard(name, current, view, unfinished, int(percent or 0))


def environments_tab(plane: ControlPlane, model_id: str, only: Optional[str] = None) -> Optional[EnvironmentsTab]:
    """None when no model has this id (links use ids), or `only` names no environment of it."""
    store = plane.store
    model = store.models.find(model_id)
    if model is None or model.id != model_id:
        return None
    environments = sorted(store.environments.list(model.id), key=lambda e: (e.name != PRODUCTION, e.name))
    if only is not None:
        environments = [e for e in environments if e.name == only]
        if not environments:
            return None
    return EnvironmentsTab(model, [_card(plane, model, e.name, e.current_deployment_id) for e in environments])


@router.get("/models/{model_id}/environments")
async def environments_page(request: Request, model_id: str) -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    tab = await asyncio.to_thread(environments_tab, request.app.state.plane, model_id)
    csrf = current.session.csrf_token
    if tab is None:
        return model_not_found(model_id, csrf)
    return render("model_environments.html", model=tab.model, tab="environments", cards=tab.cards,
                  csrf_token=csrf, page="models")


@router.get("/models/{model_id}/environments/{name}/card")
async def environment_card(request: Request, model_id: str, name: str) -> Response:
    """One environment's card, what the page polls during a promotion."""
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    tab = await asyncio.to_thread(environments_tab, request.app.state.plane, model_id, name)
    if tab is None:
        return render("not_found.html", 404, what=f"No environment “{name}” for the model “{model_id}”.",
                      csrf_token=current.session.csrf_token, page="models")
    return render("environment_card.html", 200, model=tab.model, card=tab.cards[0])
