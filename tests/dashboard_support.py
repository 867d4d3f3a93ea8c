"""What the dashboard's test modules share: a real control plane with a really pushed model
(`pushed_control_plane`), signing a plain HTTP client in as the browser's form does
(`signed_in_client`), a client without a session (`anonymous_client`) and signing a real
browser page in (`sign_in_page`)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx

from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, running_controlplane

ECHO = """
class Model:
    def predict(self, request):
        return {"echo": request}
"""


def model_config(model: str, extra: str = "") -> str:
    return f"model_name: {model}\npython_version: py311\n{extra}"


def push_active(cp: ControlPlaneProcess, source: Path, model: str | None = None, **options: Any) -> dict[str, Any]:
    """Push `source` and wait until the deployment is ACTIVE (it fails on a failed build or
    deploy); the first ACTIVE deployment of a model becomes production."""
    created = cp.push(source, model, **options)
    deployment = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
    assert deployment["status"] == "ACTIVE", deployment
    return deployment


@contextlib.contextmanager
def pushed_control_plane(root: Path, model: str, code: str = ECHO, config: str | None = None, *,
                         pushes: int = 1) -> Iterator[ControlPlaneProcess]:
    """A control plane under `root`/cp with `model` (`code` as model/model.py, `config` as
    config.yaml, by default just the name and Python) pushed `pushes` times, each ACTIVE: the
    first serves production, the others stand beside it. For a module's fixture."""
    with running_controlplane(root / "cp") as plane:
        source = write_model_dir(root / model, code, config or model_config(model))
        for _ in range(pushes):
            push_active(plane, source)
        yield plane


def truss_cli(cp: ControlPlaneProcess, home: Path) -> tuple[list[str], dict[str, str]]:
    """The real `truss` command (argv prefix, environment) with a `HOME` of its own under
    `home`, where the remote `here` is the control plane with its admin key: run it with
    `subprocess.run([*argv, "push", ..., "--remote", "here"], env=env)`."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "TRUSS_CACHE_DIR": str(home / "cache"), "COLUMNS": "200"}
    argv = [sys.executable, "-c", "from truss_cli.cli.app import main; main()"]
    subprocess.run([*argv, "remote", "add", "here", cp.url, "--api-key", cp.admin_key], env=env, check=True,
                   capture_output=True)
    return argv, env


def anonymous_client(cp: ControlPlaneProcess) -> httpx.Client:
    """A client with no session and no key (closed with the control plane's clients)."""
    client = httpx.Client(base_url=cp.url, timeout=30.0)
    cp.clients.append(client)
    return client


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


def sign_in_page(page: Any, cp: ControlPlaneProcess, path: str, base_url: str | None = None) -> None:
    """A Playwright page opens `path` (`base_url`: another address of the plane, e.g. a proxy),
    is sent to the sign-in form, signs in with the admin key and comes back to `path`."""
    from playwright.sync_api import expect

    base = base_url or cp.url
    page.goto(base + path)
    page.fill("#api_key", cp.admin_key)
    page.click("#sign-in")
    expect(page).to_have_url(base + path)
    # The URL changes before the page's deferred scripts run: a click before then (a copy
    # button) would find no listener yet (seen once in CI).
    page.wait_for_load_state("load")
