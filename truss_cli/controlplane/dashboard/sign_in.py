"""Signing in with an admin API key, and out.

The sign-in form has no session to take a CSRF token from, so it carries its own (login CSRF:
another site must not sign a browser in under the attacker's key): GET /sign-in sets a random
`truss_sign_in` cookie (HttpOnly, SameSite=Strict) and puts the same value in a hidden field;
POST /sign-in accepts only when the two are equal. Another site can neither read the cookie
nor make the browser send it.

The form is parsed with urllib (application/x-www-form-urlencoded): python-multipart is not a
dependency, and nothing here uploads files.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Optional
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from truss_cli.controlplane import auth
from truss_cli.controlplane.dashboard.render import render
from truss_cli.controlplane.session_cookies import (
    LIFETIME, SignedIn, clear_session_cookie, cookies_of, csrf_matches, is_https, set_session_cookie,
)

router = APIRouter(include_in_schema=False)
SIGN_IN_COOKIE = "truss_sign_in"
_MAX_FORM_BYTES = 16 * 1024
_HOME = "/"


def safe_next(target: Optional[str]) -> str:
    """`target` when it is a path on this site, else the models page: a sign-in link must not
    send the browser elsewhere (`//evil.example`, `https://...`, `/\\evil`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return _HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return _HOME
    return target


def to_sign_in(request: Request) -> RedirectResponse:
    """Where a page sends a browser without a session, coming back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?{urlencode({'next': here})}", status_code=303)


async def signed_in(request: Request) -> Optional[SignedIn]:
    cookies = cookies_of(request)
    return None if cookies is None else await asyncio.to_thread(cookies.signed_in, request)


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = _HOME) -> Response:
    target = safe_next(next)
    if await signed_in(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _form(request, target)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return _form(request, _HOME, "The form is too large.", 413)
    form = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
    target = safe_next(form.get("next"))
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if not expected or not csrf_matches(expected, form.get("sign_in_token")):
        return _form(request, target, "This sign-in form expired or came from another site; try again.", 403)
    plane = request.app.state.plane
    key = await asyncio.to_thread(auth.authenticate, plane.store, f"Api-Key {form.get('api_key', '').strip()}")
    if key is None:
        return _form(request, target, "Unknown or revoked API key. Use an admin key "
                     "(`truss server start` prints where it is kept; `truss api-keys create` makes another).", 401)
    if not key.is_admin:
        return _form(request, target, "This is an invoke key: it may only call models. "
                     "Sign in with an admin key.", 403)
    cookies = cookies_of(request)
    sessions = plane.store.dashboard_sessions
    previous = await signed_in(request)
    if previous is not None:  # signing in again replaces the browser's session, not adds one
        await asyncio.to_thread(sessions.delete, previous.token)
    made = await asyncio.to_thread(sessions.create, key, LIFETIME)
    await asyncio.to_thread(sessions.delete_expired)  # sign-ins are rare: the sweep costs nothing
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, cookies.sign(made.token))  # type: ignore[union-attr]
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """Deletes the session's row (a copied cookie opens nothing afterwards) and the cookie."""
    current = await signed_in(request)
    if current is not None:
        body = await request.body()
        form = {name: values[0] for name, values in parse_qs(body[:_MAX_FORM_BYTES].decode("utf-8", "replace")).items()}
        given = request.headers.get("x-csrf-token") or form.get("csrf_token")
        if not csrf_matches(current.session.csrf_token, given):
            return Response("sign-out needs the page's CSRF token", status_code=403, media_type="text/plain")
        await asyncio.to_thread(request.app.state.plane.store.dashboard_sessions.delete, current.token)
    response = RedirectResponse("/sign-in", status_code=303)
    clear_session_cookie(response, request)
    return response


def _form(request: Request, target: str, error: Optional[str] = None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render("sign_in.html", status_code, next=target, sign_in_token=token, error=error, csrf_token=None)
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=3600, path="/sign-in", httponly=True, samesite="strict",
                        secure=is_https(request))
    return response
