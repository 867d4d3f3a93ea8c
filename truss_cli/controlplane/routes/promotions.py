"""`/v1/models/{model}/environments/{name}/...`: the promotion in progress, read and steered
(issue 11, task C). Starting one is the environment's `promote` (task A's routes, which call
rollouts.begin_promotion).

The controls answer `{"status", "message", "promotion"}`: `status` is where the promotion is
going (a pause or a cancel asked inside a stabilization wait applies at its end: the answer
says PAUSED / RAMPING_DOWN and the promotion's `requested_action` says it is pending).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request

from truss_cli.controlplane import rollout_machine as machine, rollouts
from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import NotFound, Store
from truss_cli.controlplane.store.promotions import Promotion

router = APIRouter(dependencies=[Depends(require_admin)])

_BASE = "/v1/models/{model_ref}/environments/{environment}"
CANARY_DEPRECATED = ("canary promotions (ramp_up_while_promoting) are deprecated: use rolling_deploy in the "
                     "environment's promotion_settings")

# route word -> (machine action, the status the answer names when the action is only pending)
_CONTROLS = {
    "pause_promotion": (machine.PAUSE, machine.PAUSED),
    "resume_promotion": (machine.RESUME, None),
    "cancel_promotion": (machine.CANCEL, machine.RAMPING_DOWN),
    "force_cancel_promotion": (machine.FORCE_CANCEL, None),
    "force_roll_forward_promotion": (machine.FORCE_ROLL_FORWARD, None),
}
_MESSAGES = {
    machine.PAUSED: "paused: the traffic split and replicas hold until resume",
    machine.RAMPING_UP: "resumed: the rollout goes on",
    machine.RELEASING: "resumed: the rollout goes on",
    machine.RAMPING_DOWN: "canceling: traffic returns to the previous deployment as its replicas are ready",
    machine.CANCELED: "canceled: all traffic is on the previous deployment",
    machine.SUCCEEDED: "rolled forward: all traffic is on the candidate, now the environment's deployment",
}


def _deployment_view(store: Store, deployment_id: Optional[str], wanted: Optional[int]) -> Optional[dict[str, Any]]:
    if deployment_id is None:
        return None
    try:
        deployment = store.deployments.get_by_id(deployment_id)
    except NotFound:
        return {"id": deployment_id, "deleted": True}
    return {"id": deployment.id, "name": deployment.name, "status": deployment.status,
            "ready_replicas": rollouts.ready_replicas(store, deployment.id),
            # What the promotion asks for; null: the deployment's own count (its autoscaler).
            "rollout_replicas": wanted, "desired_replicas": deployment.desired_replicas}


def _timing(promotion: Promotion, now: float) -> dict[str, Any]:
    """The phase, its start and the time left in a timed wait, computed here so that a client
    needs no clock agreement with the control plane (and no guess from updated_at)."""
    plan = promotion.settings.get("plan", {})
    progress = promotion.settings.get("progress", {})
    # rollout_machine's PHASE_UP / PHASE_STABILIZING / PHASE_BOUNDARY inside a rolling step;
    # canary and instant promotions stay at the boundary.
    phase = progress.get("phase", machine.PHASE_BOUNDARY)
    since = float(progress.get("phase_since", promotion.created_at.timestamp()))
    elapsed = max(0.0, now - since)
    rolling, canary = promotion.kind == "rolling", promotion.kind == "canary"
    stabilization = float(plan.get("stabilization_time_seconds", 0.0)) if rolling else None
    ramp_up = float(plan.get("ramp_up_duration_seconds", 0.0)) if canary else None
    left = None
    if promotion.status == machine.RAMPING_UP:  # paused, ramping down or over: no timed wait
        if rolling and phase == machine.PHASE_STABILIZING:
            left = max(0.0, stabilization - elapsed)
        elif canary:  # its ramp: ten equal stages from phase_since
            left = max(0.0, ramp_up - elapsed)
    return {"phase": phase, "phase_since": datetime.fromtimestamp(since, timezone.utc).isoformat(),
            "seconds_in_phase": round(elapsed, 1),
            "seconds_left_in_phase": None if left is None else round(left, 1),
            "stabilization_time_seconds": stabilization, "ramp_up_duration_seconds": ramp_up}


def promotion_view(store: Store, environment: str, promotion: Promotion) -> dict[str, Any]:
    candidate_wanted, previous_wanted = rollouts.wanted_replicas(promotion)
    view = {
        "id": promotion.id, "environment": environment, "kind": promotion.kind,
        "rolling_deploy": promotion.kind == "rolling", "status": promotion.status,
        "percent_traffic_to_new_version": promotion.percent_traffic_to_new_version, "step": promotion.step,
        "steps": machine.Plan(**promotion.settings["plan"]).steps if promotion.kind == "rolling" else None,
        **_timing(promotion, time.time()),
        "requested_action": promotion.requested_action, "error_message": promotion.error_message,
        "cleanup": promotion.settings.get("cleanup"),
        "candidate_deployment": _deployment_view(store, promotion.candidate_deployment_id, candidate_wanted),
        "previous_deployment": _deployment_view(store, promotion.previous_deployment_id, previous_wanted),
        "created_at": promotion.created_at.isoformat(), "updated_at": promotion.updated_at.isoformat(),
        "finished_at": promotion.finished_at.isoformat() if promotion.finished_at else None,
    }
    if promotion.kind == "canary":
        view["deprecation"] = CANARY_DEPRECATED
    return view


def _read(store: Store, model_ref: str, environment: str) -> dict[str, Any]:
    model = store.models.get(model_ref)
    promotions = rollouts.promotions_of(store)
    env = promotions.environment(model.id, environment)
    promotion = promotions.latest(env.id)
    return {"model_id": model.id, "environment": env.name,
            "current_deployment_id": env.current_deployment_id,
            "promotion": promotion_view(store, env.name, promotion) if promotion else None}


@router.get(_BASE + "/promotion")
async def get_promotion(request: Request, model_ref: str, environment: str) -> dict[str, Any]:
    """The promotion in progress, else the last one (null: never promoted into)."""
    return await asyncio.to_thread(_read, plane_of(request).store, model_ref, environment)


def _control(store: Store, model_ref: str, environment: str, word: str) -> dict[str, Any]:
    action, pending_status = _CONTROLS[word]
    model = store.models.get(model_ref)
    promotion = rollouts.apply_control(store, model.id, environment, action)
    status = pending_status if promotion.requested_action == action and pending_status else promotion.status
    message = _MESSAGES.get(status, status)
    if promotion.requested_action == action:
        message += " (at the end of the current stabilization wait)"
    return {"status": status, "message": message, "promotion": promotion_view(store, environment, promotion)}


def _control_route(word: str) -> None:
    async def control(request: Request, model_ref: str, environment: str) -> dict[str, Any]:
        plane = plane_of(request)
        answer = await asyncio.to_thread(_control, plane.store, model_ref, environment, word)
        # Tick now, as the promote routes do: a control that moved the split (force_*, a canary's
        # cancel) holds for every request sent after its answer, not from the next tick on.
        await plane.reconciler.refresh()
        return answer

    control.__name__ = word
    router.post(_BASE + "/" + word)(control)


for _word in _CONTROLS:
    _control_route(_word)
