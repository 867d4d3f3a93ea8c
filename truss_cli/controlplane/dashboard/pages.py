"""The pages: `/` is the Models page (`?q=` a name search, `?page=` from 1, fifty models a
page). A browser without a live session is sent to /sign-in with `next` set to come back.
Pages only read; every change a page offers goes to /v1."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from truss_cli.controlplane.dashboard.models_page import PAGE_SIZE, models_page as read_models_page
from truss_cli.controlplane.dashboard.render import render
from truss_cli.controlplane.dashboard.sign_in import signed_in, to_sign_in

router = APIRouter(include_in_schema=False)
_MAX_QUERY = 255


def page_link(query: str, number: int) -> str:
    """The Models page's address for page `number` of the search `query`."""
    params = {**({"q": query} if query else {}), **({"page": str(number)} if number > 1 else {})}
    return "/" + (f"?{urlencode(params)}" if params else "")


@router.get("/")
async def models_page(request: Request, q: str = "", page: str = "1") -> Response:
    current = await signed_in(request)
    if current is None:
        return to_sign_in(request)
    query = q[:_MAX_QUERY]
    csrf = current.session.csrf_token
    # htmx's search and pager ask for the table only (HX-Request); a plain GET gets the whole page.
    template = "models_table.html" if request.headers.get("hx-request") == "true" else "models.html"
    number = int(page) if page.isascii() and page.isdigit() and len(page) < 10 else 0  # "²".isdigit() too
    listing = await asyncio.to_thread(read_models_page, request.app.state.plane, query, max(number, 1))
    # A bad or past-the-end page says what exists (404) rather than showing an empty table.
    bad_page = number < 1 or not listing.exists
    response = render(template, 404 if bad_page else 200, listing=listing, rows=[] if bad_page else listing.rows,
                      q=query, bad_page=bad_page, asked_page=page[:20], page_size=PAGE_SIZE, page_link=page_link,
                      csrf_token=csrf, page="models")
    response.headers["Vary"] = "HX-Request"
    return response
