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
from typing import Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard import deployment_picker as picker
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.plane import ControlPlane

router = APIRouter(include_in_schema=False)

# The vendored chart library (static/vendor/VENDOR.json; scripts/vendor_assets.py).
UPLOT_JS = "vendor/uPlot-1.6.32.iife.min.js"
UPLOT_CSS = "vendor/uPlot-1.6.32.min.css"


def metrics_tab(plane: ControlPlane, model_id: str, ref: Optional[str]) -> Optional[picker.Picked]:
    """None when no model has this id. Without `ref`: the whole model's figures (chosen None)."""
    return picker.pick(plane.store, model_id, ref, lambda deployments: None)


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
