"""A model's Overview page, `/models/{id}`: the name, the description and README (both edited
through PATCH /v1/models/{id}, the management API the CLI uses), Type and Framework, and the
code to call production, each environment and each deployment.

Everything shown is the API's own model view (routes/views.model_detail: the same fields and
the same invocation code `truss models show` prints), read with the URL this request came in
on, so the code names the control plane as the browser reached it."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard.readme import readme_html
from truss_cli.controlplane.dashboard.render import model_not_found, render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in
from truss_cli.controlplane.invocation import KEY_VARIABLE
from truss_cli.controlplane.routes.views import base_url_of, model_detail

router = APIRouter(include_in_schema=False)


@router.get("/models/{model_id}")
async def model_overview(request: Request, model_id: str) -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    plane = request.app.state.plane
    base_url = base_url_of(request)

    def read() -> Optional[dict[str, Any]]:
        model = plane.store.models.find(model_id)
        # Pages link by id only: a name could later be another model's id-looking text.
        if model is None or model.id != model_id:
            return None
        return model_detail(plane, model, base_url)

    detail = await asyncio.to_thread(read)
    csrf_token = current.session.csrf_token
    if detail is None:
        return model_not_found(model_id, csrf_token)
    return render("model_overview.html", model=detail, tab="overview", csrf_token=csrf_token, page="models",
                  readme_html=readme_html(detail["readme"]), key_variable=KEY_VARIABLE,
                  status_labels={d["id"]: d["status_label"] for d in detail["deployments"]})
