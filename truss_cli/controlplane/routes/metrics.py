"""`GET /v1/models/{model}/metrics`: the last hour of a model's (or one deployment's) requests/s,
error rate, p50/p95 latency and ready replicas, in 10 s buckets, from the gateway's memory
(gateway/metrics_history.py: lost when the control plane restarts; `kept_since` says since when).

Without `deployment=` the figures are the model's: every request to it (including 5xx answered
before a deployment was chosen, e.g. no replica ready in time) and the replicas of all its
deployments summed. `deployments` lists the model's deployments for a picker either way.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request

from truss_cli.controlplane.auth import require_admin
from truss_cli.controlplane.errors import ApiError
from truss_cli.controlplane.routes.views import plane_of
from truss_cli.controlplane.store import Deployment

router = APIRouter(dependencies=[Depends(require_admin)])

MAX_MINUTES = 60
_SERIES = ("time", "requests", "errors", "requests_per_second", "error_rate", "p50_ms", "p95_ms", "replicas")


def _where(deployment: Deployment) -> Optional[str]:
    if deployment.is_production:
        return "production"
    if deployment.is_development:
        return "development"
    return deployment.environment or None


def _deployment_view(deployment: Deployment) -> dict[str, Any]:
    return {"id": deployment.id, "name": deployment.name, "environment": _where(deployment),
            "status": deployment.status}


@router.get("/v1/models/{model_ref}/metrics")
async def model_metrics(request: Request, model_ref: str, deployment: Optional[str] = None,
                        minutes: int = MAX_MINUTES) -> dict[str, Any]:
    if not 1 <= minutes <= MAX_MINUTES:
        raise ApiError(400, "BAD_MINUTES", f"minutes={minutes}: give 1 to {MAX_MINUTES}",
                       f"the control plane keeps the last {MAX_MINUTES} minutes")
    plane = plane_of(request)
    store = plane.store
    model = await asyncio.to_thread(store.models.get, model_ref)
    deployments = await asyncio.to_thread(store.deployments.list, model.id)
    chosen = None
    if deployment:
        chosen = await asyncio.to_thread(store.deployments.get, model.id, deployment)  # 404 lists them
    # The history is written on the event loop's thread: read it there too (no locks).
    history = plane.gateway.metrics.history
    if chosen is None:
        window = history.window(model.id, None, [d.id for d in deployments], minutes)
    else:
        window = history.window(model.id, chosen.id, [chosen.id], minutes)
    figures = asdict(window)
    return {
        "model_id": model.id, "model_name": model.name,
        "deployment": _deployment_view(chosen) if chosen else None,
        "deployments": [_deployment_view(d) for d in deployments],
        "step_seconds": window.step_seconds, "start": window.start, "kept_since": window.kept_since,
        "series": {name: figures[name] for name in _SERIES},
    }
