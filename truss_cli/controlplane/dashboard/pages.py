"""The pages: `/` is the Models page. A browser without a live session is sent to /sign-in
with `next` set to come back. Pages only read; every change a page offers goes to /v1."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard.models_page import model_rows
from truss_cli.controlplane.dashboard.render import render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in

router = APIRouter(include_in_schema=False)
_MAX_QUERY = 255


@router.get("/")
async def models_page(request: Request, q: str = "") -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    query = q[:_MAX_QUERY]
    rows = await asyncio.to_thread(model_rows, request.app.state.plane, query)
    # htmx's search asks for the table only (HX-Request); a plain GET gets the whole page.
    template = "models_table.html" if request.headers.get("hx-request") == "true" else "models.html"
    response = render(template, rows=rows, q=query, csrf_token=current.session.csrf_token, page="models")
    response.headers["Vary"] = "HX-Request"
    return response
