"""A model's Logs tab, `/models/{id}/logs?deployment=<id|name|production|development>`: a picker
of the model's deployments and the chosen one's build and replica logs, followed live.

The page only says which deployment and where its logs are: static/logs.js reads the existing
NDJSON endpoint (`/v1/models/{id}/deployments/{ref}/logs?follow=true`, the one `truss logs
--tail` reads) with the session cookie and appends each line as text. No second log route:
what the page shows is what the API gives.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard import deployment_picker as picker
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import status_label
from truss_cli.controlplane.store import Deployment

router = APIRouter(include_in_schema=False)


def _production_or_newest(deployments: list[Deployment]) -> Optional[Deployment]:
    return next((d for d in deployments if d.is_production), deployments[-1] if deployments else None)


def logs_tab(plane: ControlPlane, model_id: str, ref: Optional[str]) -> Optional[picker.Picked]:
    """None when no model has this id. Without `ref`: production, or while nothing serves
    production the newest deployment (what `truss logs` shows by default)."""
    return picker.pick(plane.store, model_id, ref, _production_or_newest)


@router.get("/models/{model_id}/logs")
async def logs_page(request: Request, model_id: str, deployment: Optional[str] = None) -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    tab = await asyncio.to_thread(logs_tab, request.app.state.plane, model_id, deployment)
    csrf = current.session.csrf_token
    if tab is None:
        return model_not_found(model_id, csrf)
    chosen = tab.chosen
    return render("model_logs.html", 404 if tab.asked else 200, model=tab.model, tab="logs", choices=tab.choices,
                  chosen=chosen, asked=tab.asked, csrf_token=csrf, page="models",
                  status_label=status_label(chosen.status) if chosen else None)
