"""A model's Metrics tab, `/models/{id}/metrics?deployment=<id|name|production|development>`: a
picker (the model as a whole, or one deployment) and four charts of the last hour — requests/s,
error rate, p50 and p95 latency, ready replicas.

The page only says whose figures and where they are: static/metrics.js reads the management
API's `GET /v1/models/{id}/metrics` (routes/metrics.py, from the gateway's memory) with the
session cookie every 10 s and draws the charts with the vendored uPlot. No second metrics
route: what the page shows is what the API gives.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard import deployment_picker as picker
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.store import Deployment, Model

router = APIRouter(include_in_schema=False)

# The vendored chart library (static/vendor/VENDOR.json; scripts/vendor_assets.py).
UPLOT_JS = "vendor/uPlot-1.6.32.iife.min.js"
UPLOT_CSS = "vendor/uPlot-1.6.32.min.css"


@dataclass(frozen=True)
class MetricsTab:
    model: Model
    choices: list[picker.Choice]
    chosen: Optional[Deployment]  # None: the model's figures (or `deployment=` named none)
    asked: Optional[str]  # what `deployment=` said, when it named no deployment


def metrics_tab(plane: ControlPlane, model_id: str, ref: Optional[str]) -> Optional[MetricsTab]:
    """None when no model has this id (links use ids: a name is not looked up)."""
    store = plane.store
    model = store.models.find(model_id)
    if model is None or model.id != model_id:
        return None
    choices = picker.choices(store.deployments.list(model.id))
    if not ref:
        return MetricsTab(model, choices, None, None)
    chosen = store.deployments.find(model.id, ref)
    return MetricsTab(model, choices, chosen, None if chosen else ref)


@router.get("/models/{model_id}/metrics")
async def metrics_page(request: Request, model_id: str, deployment: Optional[str] = None) -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    tab = await asyncio.to_thread(metrics_tab, request.app.state.plane, model_id, deployment)
    csrf = current.session.csrf_token
    if tab is None:
        return model_not_found(model_id, csrf)
    return render("model_metrics.html", 404 if tab.asked else 200, model=tab.model, tab="metrics",
                  choices=tab.choices, chosen=tab.chosen, asked=tab.asked, csrf_token=csrf, page="models",
                  uplot_js=UPLOT_JS, uplot_css=UPLOT_CSS)
