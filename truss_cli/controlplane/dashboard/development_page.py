"""A model's Development tab, `/models/{id}/development`: its development deployment (the one
`truss push --watch` syncs) — the patch hash it runs, the tree staged for it, a rebuild's
phase, whether it is awake and when it will sleep, the predict URL, and its last syncs.

Reads only: the store (patch points, `dev_syncs`) and the reconciler's in-memory idle clock.
The part that changes (`development_live.html`) re-reads itself every 2 s
(`/models/{id}/development/live`, htmx polling), so a sync made by `truss watch` while the
page is open appears without a reload. The Wake button (in the live part) calls `POST /v1/.../wake` (routes/wake.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane import invocation
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import base_url_of, status_label
from truss_cli.controlplane.store import Deployment, Model, states
from truss_cli.controlplane.store.dev_syncs import DevSync

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 2
# `truss watch` calls the wake route every 60 s (client/dev_session.py KEEP_AWAKE_SECONDS): a
# call this recent means a watch session (or someone's Wake) keeps the deployment awake.
WATCHED_WITHIN_SECONDS = 90.0
ACTIONS = {"hot_swap": "hot swap", "restart": "restart", "requirements": "requirements", "rebuild": "rebuild",
           "deferred": "deferred", "failed": "failed", "rebuilt": "rebuilt"}


@dataclass(frozen=True)
class SyncRow:
    at: str  # UTC, to the second
    at_iso: str
    files: list[str]  # the first paths, each with its change sign
    more_files: int  # changed paths beyond those listed
    counts: str  # "+1 ~2 -0"
    action: str
    action_class: str
    reason: Optional[str]
    ms: Optional[float]
    error: Optional[str]
    to_tree: str


@dataclass(frozen=True)
class Awake:
    status: str  # the precise status: ACTIVE, SCALED_TO_ZERO, WAKING_UP, ...
    label: str  # Baseten's word: Active, Scaled to zero, Waking up, ...
    sleep: str  # when it will sleep, or how it wakes
    kept_awake: bool


@dataclass(frozen=True)
class DevelopmentTab:
    model: Model
    deployment: Optional[Deployment]  # None: the model has no development deployment
    awake: Optional[Awake]
    syncs: list[SyncRow]
    predict: Optional[dict[str, str]]  # invocation.snippets of /development/predict


_SIGNS = {"added": "+", "updated": "~", "deleted": "-"}


def _row(sync: DevSync) -> SyncRow:
    changes: dict[str, Any] = dict(sync.changes or {})
    listed = [f"{_SIGNS.get(p.get('change', ''), '')}{p.get('path')}" for p in changes.get("paths", [])]
    total = sum(int(changes.get(kind, 0)) for kind in _SIGNS)
    counts = " ".join(f"{sign}{int(changes.get(kind, 0))}" for kind, sign in _SIGNS.items())
    return SyncRow(at=_utc(sync.synced_at), at_iso=sync.synced_at.isoformat(), files=listed,
                   more_files=max(0, total - len(listed)), counts=counts, action=ACTIONS.get(sync.action, sync.action),
                   action_class=sync.action.replace("_", "-"), reason=sync.reason, ms=sync.ms, error=sync.error,
                   to_tree=sync.to_tree)


def _utc(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _awake(plane: ControlPlane, deployment: Deployment) -> Awake:
    status = deployment.status
    development = plane.reconciler.development
    left, since_wake_call = development.idle_clock(deployment.id)
    kept = (status in (states.ACTIVE, states.UNHEALTHY) and since_wake_call is not None
            and since_wake_call < WATCHED_WITHIN_SECONDS)
    if deployment.desired_state != states.DESIRED_ACTIVE:
        sleep = "deactivated: activate it from the Deployments tab"
    elif status == states.SCALED_TO_ZERO:
        sleep = "asleep: the next request (or Wake) starts it; syncs meanwhile are applied at its start"
    elif status == states.WAKING_UP:
        sleep = "waking up: requests wait for its replica"
    elif kept:
        sleep = (f"kept awake by a watch session (truss watch wakes it every 60 s; the last call "
                 f"{_duration(since_wake_call or 0)} ago)")
    elif status in (states.ACTIVE, states.UNHEALTHY) and left is not None:
        sleep = (f"scales to zero in {_duration(left)} without requests "
                 f"(after {_duration(development.idle_seconds)} idle)")
    else:
        sleep = f"scales to zero after {_duration(development.idle_seconds)} without requests once it serves"
    return Awake(status, status_label(status), sleep, kept)


def development_tab(plane: ControlPlane, model_id: str, base_url: str) -> Optional[DevelopmentTab]:
    """None when no model has this id (links use ids)."""
    store = plane.store
    model = store.models.find(model_id)
    if model is None or model.id != model_id:
        return None
    deployment = store.deployments.find(model.id, "development")
    if deployment is None:
        return DevelopmentTab(model, None, None, [], None)
    syncs = [_row(s) for s in store.dev_syncs.recent(deployment.id)]
    predict = invocation.snippets(invocation.development_url(base_url, model.id))
    return DevelopmentTab(model, deployment, _awake(plane, deployment), syncs, predict)


async def _tab(request: Request, model_id: str) -> tuple[Any, Optional[DevelopmentTab]]:
    current = await signed_in(request)
    if current is None:
        return None, None
    return current, await asyncio.to_thread(development_tab, request.app.state.plane, model_id, base_url_of(request))


@router.get("/models/{model_id}/development")
async def development_page(request: Request, model_id: str) -> Response:
    current, tab = await _tab(request, model_id)
    if current is None:
        return to_sign_in(request)
    csrf = current.session.csrf_token
    if tab is None:
        return model_not_found(model_id, csrf)
    return render("model_development.html", model=tab.model, tab="development", dev=tab, csrf_token=csrf,
                  page="models", poll_seconds=POLL_SECONDS)


@router.get("/models/{model_id}/development/live")
async def development_live(request: Request, model_id: str) -> Response:
    """The changing part of the page, what it polls: status, patch points, last syncs."""
    current, tab = await _tab(request, model_id)
    if current is None:
        return to_sign_in(request)
    if tab is None:
        return model_not_found(model_id, current.session.csrf_token)
    return render("development_live.html", model=tab.model, dev=tab, poll_seconds=POLL_SECONDS)
