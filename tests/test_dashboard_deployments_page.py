"""A model's Deployments tab against a real control plane with a really pushed model (two
deployments, one in production, and a `staging` environment): over plain HTTP the table and
the rules (unknown model, no session); in a real browser (headless Chromium) the actions, which
call /v1: deactivate then activate (predict answers 404, then 200 again), deleting production
shows the server's refusal as it is, rename shows the new name after a reload.

One control plane for the module; screenshots under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from controlplane_support import ControlPlaneProcess
from dashboard_support import anonymous_client, pushed_control_plane, sign_in_page as sign_in_at, signed_in_client

MODEL = "deploy-tab"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    # Two pushes: the first becomes production once ACTIVE; the second does not.
    with pushed_control_plane(tmp_path_factory.mktemp("dashboard-deployments"), MODEL, pushes=2) as plane:
        plane.client.post(f"/v1/models/{MODEL}/environments", json={"name": "staging"}).raise_for_status()
        yield plane


def deployments(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    return cp.client.get(f"/v1/models/{MODEL}/deployments").raise_for_status().json()["deployments"]


def model_id(cp: ControlPlaneProcess) -> str:
    return deployments(cp)[0]["model_id"]


def row_of(html: str, deployment_id: str) -> str:
    match = re.search(rf'<tr data-deployment-id="{deployment_id}".*?</tr>', html, re.S)
    assert match, f"no row for {deployment_id} in:\n{html}"
    return match.group(0)


# -- over HTTP ----------------------------------------------------------------------------------

def test_the_table_lists_every_deployment_with_baseten_s_status_words(cp):
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{model_id(cp)}/deployments")
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Deployments</a>' in page.text
    listed = deployments(cp)
    assert len(listed) == 2
    for deployment in listed:
        row = row_of(page.text, deployment["id"])
        assert f">{deployment['name']}<" in row
        assert ">Active</span>" in row and ">ACTIVE</div>" in row  # Baseten's word and the precise one
        assert f"{deployment['active_replica_count']} / {deployment['replicas']}" in row
        assert f">{deployment['version']}<" in row
    production, other = (listed[0], listed[1]) if listed[0]["is_production"] else (listed[1], listed[0])
    assert re.search(r'class="environment">production<', row_of(page.text, production["id"]))
    assert "promote-production" not in row_of(page.text, production["id"])  # it already is
    assert "promote-production" in row_of(page.text, other["id"])
    assert '<option value="staging">staging</option>' in row_of(page.text, other["id"])


def test_an_unknown_model_answers_404_with_a_link_back_to_models(cp):
    client, _ = signed_in_client(cp)
    page = client.get("/models/no-such-model-id/deployments")
    assert page.status_code == 404
    assert "No model has the id “no-such-model-id”" in page.text and 'href="/" id="back-to-models"' in page.text
    by_name = client.get(f"/models/{MODEL}/deployments")  # links use ids; a name is not looked up
    assert by_name.status_code == 404


def test_without_a_session_the_page_redirects_to_sign_in_and_back(cp):
    anonymous = anonymous_client(cp)
    path = f"/models/{model_id(cp)}/deployments"
    answer = anonymous.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=" + path.replace("/", "%2F")
    assert anonymous.get("/models/no-such-model-id/deployments").status_code == 303  # no hint what exists


def test_a_model_without_deployments_says_how_to_make_one(cp):
    from truss_cli.controlplane.store import Store

    with Store.open(cp.data_dir) as store:  # a model with no deployment: no push needed
        made = store.models.create("empty-model")
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{made.id}/deployments")
    assert page.status_code == 200 and "No deployments yet" in page.text and "<tbody>" not in page.text


def test_a_failed_deployment_offers_retry_and_its_cause_is_escaped(cp):
    from truss_cli.controlplane.store import Store

    with Store.open(cp.data_dir) as store:  # a failed build's row, made directly: no build runs
        model = store.models.create("failed-model")
        failed = store.deployments.create(model.id, config={}, status="BUILD_FAILED", first_becomes_production=False)
        store.deployments.set_status(failed.id, "BUILD_FAILED", "<script>alert(1)</script> pip install failed")
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{model.id}/deployments")
    assert page.status_code == 200, page.text
    row = row_of(page.text, failed.id)
    assert ">Deployment Failed</span>" in row and ">BUILD_FAILED</div>" in row
    assert "&lt;script&gt;alert(1)&lt;/script&gt; pip install failed" in row and "<script>alert" not in row
    assert 'class="retry"' in row and 'class="deactivate"' not in row and 'class="activate"' not in row


def test_without_a_session_every_page_redirects_and_every_action_is_refused(cp):
    """Every page the dashboard mounts (read from its routers, so a tab added later is covered
    too) sends a browser without a session to sign-in; every action the pages offer (the
    hx-post/patch/delete URLs of the rendered tabs, plus the promotion controls a card shows
    only during a promotion) answers 401 without a session and 403 CSRF_FAILED with the
    session's cookie but no CSRF token, and nothing changes."""
    from truss_cli.controlplane.dashboard.routes import routers

    mid = model_id(cp)
    anonymous = anonymous_client(cp)
    values = {"model_id": mid, "name": "production"}
    pages = set()
    for router in routers:
        for route in router.routes:
            if "GET" not in route.methods or route.path in ("/sign-in",) or route.path.startswith("/static"):
                continue
            pages.add(re.sub(r"{(\w+)(:\w+)?}", lambda m: values.get(m.group(1), "x"), route.path))
    assert {"/", f"/models/{mid}", f"/models/{mid}/deployments", f"/models/{mid}/environments",
            f"/models/{mid}/logs"} <= pages, pages
    for path in sorted(pages):
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next="), path

    client, _ = signed_in_client(cp)
    actions = set()
    for tab in ("", "/deployments", "/environments", "/logs"):
        page = client.get(f"/models/{mid}{tab}")
        assert page.status_code == 200, (tab, page.text)
        actions |= {(method.upper(), url) for method, url in re.findall(r'hx-(post|patch|put|delete)="([^"]+)"',
                                                                          page.text)}
    environment = f"/v1/models/{mid}/environments/production"
    actions |= {("POST", f"{environment}/{control}") for control in
                ("pause_promotion", "resume_promotion", "cancel_promotion", "force_cancel_promotion",
                 "force_roll_forward_promotion")}
    methods = {method for method, _ in actions}
    assert {"POST", "PATCH", "DELETE"} <= methods and any(url.endswith("/deactivate") for _, url in actions), actions
    def state() -> list[tuple[str, str, str, bool]]:
        return [(d["id"], d["name"], d["status"], d["is_production"]) for d in deployments(cp)]

    before = state()
    for method, url in sorted(actions):
        without = anonymous.request(method, url, json={})
        assert without.status_code == 401, (method, url, without.text)
        forged = client.request(method, url, json={})
        assert forged.status_code == 403 and forged.json()["error_code"] == "CSRF_FAILED", (method, url, forged.text)
    assert state() == before


# -- in a browser -------------------------------------------------------------------------------

def predict_status(cp: ControlPlaneProcess, mid: str, deployment_id: str) -> int:
    return cp.client.post(f"/model-{mid}/deployment/{deployment_id}/predict", json={"x": 1}).status_code


@pytest.mark.browser
def test_deactivate_then_activate_from_the_page(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    other = next(d for d in deployments(cp) if not d["is_production"])
    mid = other["model_id"]
    assert predict_status(cp, mid, other["id"]) == 200
    page = context.new_page()
    sign_in_at(page, cp, f"/models/{mid}/deployments")
    page.screenshot(path=screenshots / "deployments.png", full_page=True)
    row = page.locator(f'tr[data-deployment-id="{other["id"]}"]')
    asked: list[str] = []

    def say_no(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", say_no)  # asked first; saying no changes nothing
    row.locator("button.deactivate").click()
    assert asked and asked[0].startswith(f"Deactivate {other['name']}?"), asked
    page.reload()
    expect(row.locator("button.deactivate")).to_be_visible()
    assert predict_status(cp, mid, other["id"]) == 200
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.deactivate").click()
    expect(row.locator("button.deactivate")).to_have_count(0)  # the page reloaded after the API said yes
    assert predict_status(cp, mid, other["id"]) == 404
    # Activate is offered once its replicas have stopped (INACTIVE); the page is reloaded until then.
    deadline = time.monotonic() + 120
    while row.locator("button.activate").count() == 0:
        assert time.monotonic() < deadline, f"still {row.locator('td.status').inner_text()!r}"
        time.sleep(0.5)
        page.reload()
    expect(row.locator(".badge")).to_have_text("Inactive")
    page.screenshot(path=screenshots / "deployments-deactivated.png", full_page=True)
    row.locator("button.activate").click()
    expect(row.locator("button.deactivate")).to_be_visible()
    deadline = time.monotonic() + 300  # a replica starts from the stored build
    while (status := predict_status(cp, mid, other["id"])) != 200:
        assert time.monotonic() < deadline, f"predict still answers {status}\n{cp.log()[-3000:]}"
        time.sleep(0.5)
    page.reload()
    expect(row.locator(".badge")).to_have_text("Active")


@pytest.mark.browser
def test_deleting_production_shows_the_server_s_refusal(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    production = next(d for d in deployments(cp) if d["is_production"])
    page = context.new_page()
    sign_in_at(page, cp, f"/models/{production['model_id']}/deployments")
    refusal = cp.client.delete(f"/v1/models/{MODEL}/deployments/{production['id']}")
    assert refusal.status_code == 409
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'tr[data-deployment-id="{production["id"]}"] button.delete').click()
    shown = page.locator("#action-error")
    expect(shown).to_be_visible()
    expect(shown).to_have_text(f"{refusal.json()['error']} ({refusal.json()['detail']})")  # as the server says it
    page.screenshot(path=screenshots / "deployments-delete-production-refused.png", full_page=True)
    assert any(d["id"] == production["id"] and d["is_production"] for d in deployments(cp))


@pytest.mark.browser
def test_rename_shows_the_new_name_after_a_reload(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    other = next(d for d in deployments(cp) if not d["is_production"])
    page = context.new_page()
    sign_in_at(page, cp, f"/models/{other['model_id']}/deployments")
    row = page.locator(f'tr[data-deployment-id="{other["id"]}"]')
    row.locator(".rename summary").click()
    row.locator('.rename input[name="name"]').fill("renamed-on-the-page")
    row.locator('.rename button[type="submit"]').click()
    expect(row.locator("td.name")).to_contain_text("renamed-on-the-page")
    page.reload()
    expect(row.locator("td.name")).to_contain_text("renamed-on-the-page")
    assert any(d["id"] == other["id"] and d["name"] == "renamed-on-the-page" for d in deployments(cp))
    # A taken name is refused with the server's words, and nothing changes.
    row.locator(".rename summary").click()
    production = next(d for d in deployments(cp) if d["is_production"])
    row.locator('.rename input[name="name"]').fill(production["name"])
    row.locator('.rename button[type="submit"]').click()
    refusal = cp.client.patch(f"/v1/models/{MODEL}/deployments/{other['id']}", json={"name": production["name"]})
    assert refusal.status_code == 409
    expect(page.locator("#action-error")).to_have_text(f"{refusal.json()['error']} ({refusal.json()['detail']})")
    page.screenshot(path=screenshots / "deployments-rename-refused.png", full_page=True)
    assert any(d["id"] == other["id"] and d["name"] == "renamed-on-the-page" for d in deployments(cp))


@pytest.mark.browser
def test_promote_into_an_environment_from_its_select(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    other = next(d for d in deployments(cp) if not d["is_production"])
    mid = other["model_id"]
    assert cp.client.post(f"/model-{mid}/environments/staging/predict", json={"x": 1}).status_code != 200
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in_at(page, cp, f"/models/{mid}/deployments")
    row = page.locator(f'tr[data-deployment-id="{other["id"]}"]')
    row.locator(".promote-environment select").select_option("staging")
    row.locator('.promote-environment button[type="submit"]').click()
    expect(row.locator("td.environment")).to_have_text("staging")
    expect(row.locator(".promote-environment")).to_have_count(0)  # staging was its only other choice
    page.screenshot(path=screenshots / "deployments-promoted-to-staging.png", full_page=True)
    answer = cp.client.post(f"/model-{mid}/environments/staging/predict", json={"x": 1})
    assert answer.status_code == 200 and answer.json() == {"echo": {"x": 1}}, answer.text
    # htmx, hx-confirm and our script run under the pages' strict Content-Security-Policy.
    assert not [e for e in errors if "Content Security Policy" in e], errors

