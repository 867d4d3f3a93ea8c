"""The dashboard in a real browser (headless Chromium), against a real control plane serving a
really pushed model: sign-in (and its refusals), the Models page and its search, a model pushed
by the real `truss push` appearing on it, sign-out, redirects without a session, a forged
request without the CSRF token, a revoked key.

Screenshots of each page go under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from controlplane_support import ControlPlaneProcess
from conftest import write_model_dir
from dashboard_support import ECHO, model_config, pushed_control_plane, truss_cli
from truss_cli.controlplane.session_cookies import COOKIE
from truss_cli.controlplane.store import Store

pytestmark = pytest.mark.browser

MODEL = "dash-hello"
OTHER = "other-model"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with pushed_control_plane(tmp_path_factory.mktemp("dashboard-browser"), MODEL) as plane:
        model_id = plane.client.get(f"/v1/models/{MODEL}").raise_for_status().json()["id"]
        for n in range(2):  # what the page's "Requests (last hour)" counts
            plane.client.post(f"/model-{model_id}/production/predict", json={"n": n}).raise_for_status()
        with Store.open(plane.data_dir) as store:  # a second model for the search, no push needed
            store.models.create(OTHER)
        yield plane


def sign_in(page: Any, cp: ControlPlaneProcess, key: str) -> None:
    page.goto(cp.url + "/sign-in")
    page.fill("#api_key", key)
    page.click("#sign-in")


def test_sign_in_with_the_admin_key_shows_the_pushed_model(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(cp.url + "/")
    expect(page).to_have_url(cp.url + "/sign-in?next=%2F")
    page.screenshot(path=screenshots / "sign-in.png", full_page=True)
    page.fill("#api_key", cp.admin_key)
    page.click("#sign-in")
    expect(page).to_have_url(cp.url + "/")
    row = page.locator(f'tr[data-model="{MODEL}"]')
    expect(row.locator(".badge")).to_have_text("Active")
    expect(row.locator("td").nth(1)).to_have_text("deployment-1")
    expect(row.locator("td").nth(3)).to_have_text("1")
    expect(page.locator(f'tr[data-model="{OTHER}"]')).to_contain_text("none")
    page.screenshot(path=screenshots / "models.png", full_page=True)
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # page scripts cannot read the session


def test_a_wrong_key_and_an_invoke_key_are_refused(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, cp, "nope.not-a-key")
    expect(page.locator("#sign-in-error")).to_contain_text("Unknown or revoked API key")
    invoke = cp.client.post("/v1/api_keys", json={"scope": "invoke"}).raise_for_status().json()["key"]
    sign_in(page, cp, invoke)
    expect(page.locator("#sign-in-error")).to_contain_text("This is an invoke key")
    page.screenshot(path=screenshots / "sign-in-refused.png", full_page=True)
    page.goto(cp.url + "/")
    expect(page).to_have_url(cp.url + "/sign-in?next=%2F")


def test_search_filters_the_models_as_you_type(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in(page, cp, cp.admin_key)
    expect(page.locator(f'tr[data-model="{OTHER}"]')).to_be_visible()
    page.fill("#search", "hello")
    expect(page.locator(f'tr[data-model="{OTHER}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-model="{MODEL}"]')).to_be_visible()
    expect(page).to_have_url(cp.url + "/?q=hello")  # the search is a link too
    page.fill("#search", "no-such-thing")
    expect(page.locator("#models")).to_contain_text("No model's name contains")
    page.screenshot(path=screenshots / "models-search.png", full_page=True)
    # htmx runs under the pages' strict Content-Security-Policy without a violation.
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_sign_out_ends_the_session_for_any_copy_of_the_cookie(cp, context, browser):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, cp, cp.admin_key)
    expect(page.locator("#sign-out")).to_be_visible()
    kept = context.cookies()
    page.click("#sign-out")
    expect(page).to_have_url(cp.url + "/sign-in")
    replay = browser.new_context()
    try:
        replay.add_cookies(kept)
        other = replay.new_page()
        other.goto(cp.url + "/")
        expect(other).to_have_url(cp.url + "/sign-in?next=%2F")
        assert replay.request.get(cp.url + "/v1/models").status == 401
    finally:
        replay.close()


def test_a_forged_change_with_the_cookie_but_no_csrf_token_is_refused(cp, context):
    page = context.new_page()
    sign_in(page, cp, cp.admin_key)
    page.wait_for_url(cp.url + "/")
    forged = context.request.post(cp.url + "/v1/secrets", data={"name": "FORGED", "value": "x"})
    assert forged.status == 403 and forged.json()["error_code"] == "CSRF_FAILED"
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    allowed = context.request.post(cp.url + "/v1/secrets", data={"name": "ALLOWED", "value": "x"},
                                   headers={"X-CSRF-Token": token})
    assert allowed.status == 200, allowed.text()
    names = [s["name"] for s in cp.client.get("/v1/secrets").json()["secrets"]]
    assert "ALLOWED" in names and "FORGED" not in names


def test_revoking_the_key_ends_its_session(cp, context):
    from playwright.sync_api import expect

    key = cp.client.post("/v1/api_keys", json={"scope": "admin"}).raise_for_status().json()
    page = context.new_page()
    sign_in(page, cp, key["key"])
    expect(page.locator(f'tr[data-model="{MODEL}"]')).to_be_visible()
    cp.client.delete(f"/v1/api_keys/{key['prefix']}").raise_for_status()
    page.reload()
    expect(page).to_have_url(cp.url + "/sign-in?next=%2F")


def test_the_models_page_counts_the_requests_of_the_last_hour(cp, context):
    """The two predictions the fixture made, once the reconciler has flushed its counts
    (every few seconds): the page is reloaded until they show."""
    page = context.new_page()
    sign_in(page, cp, cp.admin_key)
    requests = page.locator(f'tr[data-model="{MODEL}"] td').nth(4)
    deadline = time.monotonic() + 60
    while requests.inner_text() != "2":
        assert time.monotonic() < deadline, f"still {requests.inner_text()!r} requests shown"
        time.sleep(1)
        page.reload()


def test_a_model_pushed_with_the_cli_appears_on_the_models_page(cp, context, tmp_path: Path, screenshots: Path):
    """The real `truss push` (a subprocess, as a user runs it) against the plane; the Models
    page, open before, shows the model on reload, its status going to Active, and its link is
    the page the CLI printed."""
    from playwright.sync_api import expect

    name = "from-the-cli"
    page = context.new_page()
    sign_in(page, cp, cp.admin_key)
    expect(page.locator(f'tr[data-model="{MODEL}"]')).to_be_visible()
    expect(page.locator(f'tr[data-model="{name}"]')).to_have_count(0)
    truss, env = truss_cli(cp, tmp_path / "home")
    source = write_model_dir(tmp_path / name, ECHO, model_config(name))
    pushed = subprocess.run([*truss, "push", str(source), "--remote", "here"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert pushed.returncode == 0, pushed.stderr
    printed = re.search(r"^Dashboard: (\S+)$", pushed.stdout, re.M).group(1)

    page.reload()
    row = page.locator(f'tr[data-model="{name}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(3)).to_have_text("1")  # one deployment
    deadline = time.monotonic() + 300
    while row.locator(".badge").inner_text() != "Active":  # the page shows the store's status on each read
        assert time.monotonic() < deadline, f"still {row.inner_text()!r}"
        time.sleep(1)
        page.reload()
    expect(row.locator("td").nth(1)).to_have_text("deployment-1")
    page.screenshot(path=screenshots / "models-after-cli-push.png", full_page=True)
    row.locator("a").click()
    expect(page).to_have_url(printed)
    expect(page.locator("h1")).to_contain_text(name)


def test_the_models_page_pages_and_the_search_finds_models_on_any_page(cp, context, screenshots: Path):
    """Runs last: its sixty models push the others' rows to later pages."""
    from playwright.sync_api import expect

    with Store.open(cp.data_dir) as store:
        for i in range(60):
            store.models.create(f"bulk-{i:02d}")
    page = context.new_page()
    sign_in(page, cp, cp.admin_key)
    total = int(re.match(r"\d+", page.locator("#models-count").inner_text()).group(0))
    assert total >= 62
    expect(page.locator("#models-count")).to_contain_text("page 1 of 2")
    expect(page.locator("table.models tbody tr")).to_have_count(50)
    expect(page.locator('tr[data-model="bulk-55"]')).to_have_count(0)
    page.evaluate("window.notReloaded = true")
    page.click("a.pager-next")  # htmx swaps the table; the address follows
    expect(page).to_have_url(cp.url + "/?page=2")
    expect(page.locator('tr[data-model="bulk-55"]')).to_be_visible()
    expect(page.locator("table.models tbody tr")).to_have_count(total - 50)
    assert page.evaluate("window.notReloaded === true")
    page.screenshot(path=screenshots / "models-page-2.png", full_page=True)
    page.click("a.pager-prev")
    expect(page).to_have_url(cp.url + "/")
    page.fill("#search", "bulk-5")  # bulk-50..59: on page 2 unsearched
    expect(page.locator("#models-count")).to_contain_text("10 models whose name contains “bulk-5”")
    expect(page.locator('tr[data-model="bulk-55"]')).to_be_visible()
    expect(page.locator("nav.pager")).to_have_count(0)
