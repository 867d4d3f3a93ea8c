"""Signing a plain HTTP client into a real control plane's dashboard, as the browser's form does."""

from __future__ import annotations

import re

import httpx

from controlplane_support import ControlPlaneProcess


def sign_in_form(client: httpx.Client, next_path: str = "/") -> str:
    """GET /sign-in: the form's hidden token (its twin is now in the client's cookie jar)."""
    page = client.get("/sign-in", params={"next": next_path})
    assert page.status_code == 200, page.text
    return re.search(r'name="sign_in_token" value="([^"]+)"', page.text).group(1)


def sign_in(client: httpx.Client, key: str, next_path: str = "/") -> httpx.Response:
    token = sign_in_form(client, next_path)
    return client.post("/sign-in", data={"api_key": key, "sign_in_token": token, "next": next_path})


def signed_in_client(cp: ControlPlaneProcess, key: str | None = None) -> tuple[httpx.Client, str]:
    """A client holding a session cookie (no Authorization header) and the page's CSRF token."""
    client = httpx.Client(base_url=cp.url, timeout=30.0)
    cp.clients.append(client)
    answer = sign_in(client, key or cp.admin_key)
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    page = client.get("/")
    assert page.status_code == 200, page.text
    return client, re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
