"""A model's Metrics tab against a real control plane with a really pushed model: over plain HTTP
the page and its rules (the picker, a deployment by id or word, unknown model or deployment, no
session, the API answering the session); in a real browser (headless Chromium) the charts: the
empty state before any traffic, then after real predicts the four uPlot charts drawn with the
requests counted (read from the page, without a reload: it refreshes every 10 s), and the
picker switching to one deployment's figures.

One control plane for the module; screenshots under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess, running_controlplane
from dashboard_support import signed_in_client

MODEL = "metrics-tab"
FAILS_ON_ASK = """
class Model:
    def predict(self, request):
        if request.get("fail"):
            raise RuntimeError("asked to fail")
        return {"ok": True}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    root = tmp_path_factory.mktemp("dashboard-metrics")
    with running_controlplane(root / "cp") as plane:
        source = write_model_dir(root / MODEL, FAILS_ON_ASK, f"model_name: {MODEL}\npython_version: py311\n")
        for _ in range(2):  # the first becomes production once ACTIVE; the second does not
            created = plane.push(source)
            deployment = plane.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED",
                                               "DEPLOY_FAILED")
            assert deployment["status"] == "ACTIVE", deployment
        yield plane


def deployments(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    return cp.client.get(f"/v1/models/{MODEL}/deployments").raise_for_status().json()["deployments"]


def metrics_url(html: str) -> str:
    match = re.search(r'id="metrics-view"[^>]*data-metrics-url="([^"]+)"', html)
    assert match, html
    return match.group(1).replace("&amp;", "&")


# -- over HTTP (no predicts here: the browser test counts them) ----------------------------------

def test_the_page_offers_the_model_and_each_deployment_and_names_the_api_it_reads(cp):
    client, _ = signed_in_client(cp)
    listed = deployments(cp)
    production = next(d for d in listed if d["is_production"])
    mid = production["model_id"]
    page = client.get(f"/models/{mid}/metrics")
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Metrics</a>' in page.text
    assert f'<option value="" selected>{MODEL}: all deployments</option>' in page.text
    for deployment in listed:
        assert f'<option value="{deployment["id"]}"' in page.text
    assert metrics_url(page.text) == f"/v1/models/{mid}/metrics"
    for chart in ("chart-requests", "chart-errors", "chart-latency", "chart-replicas"):
        assert f'id="{chart}"' in page.text
    assert '<script src="/static/vendor/uPlot-1.6.32.iife.min.js" defer></script>' in page.text
    # The API the page's script reads answers this browser's session (a GET: no CSRF header).
    body = client.get(metrics_url(page.text)).raise_for_status().json()
    assert body["model_id"] == mid and len(body["series"]["time"]) == 360
    # One deployment, by id or by a word, as the API takes them.
    by_word = client.get(f"/models/{mid}/metrics", params={"deployment": "production"})
    assert metrics_url(by_word.text) == f"/v1/models/{mid}/metrics?deployment={production['id']}"
    assert f'<option value="{production["id"]}" selected>{production["name"]} (production)</option>' in by_word.text


def test_the_vendored_chart_library_is_served_without_a_session(cp):
    anonymous = httpx.Client(base_url=cp.url, timeout=30.0)
    cp.clients.append(anonymous)
    for name, kind in (("vendor/uPlot-1.6.32.iife.min.js", "text/javascript"),
                       ("vendor/uPlot-1.6.32.min.css", "text/css"),
                       ("metrics.js", "text/javascript"), ("metrics.css", "text/css")):
        answer = anonymous.get(f"/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), name


def test_the_page_loads_the_vendored_uplot_version():
    import json

    from truss_cli.controlplane.dashboard.metrics_page import UPLOT_CSS, UPLOT_JS
    from truss_cli.controlplane.dashboard.static_files import STATIC

    recorded = json.loads((STATIC / "vendor" / "VENDOR.json").read_text())["uplot"]
    assert {UPLOT_JS.removeprefix("vendor/"), UPLOT_CSS.removeprefix("vendor/")} == set(recorded["files"])
    assert recorded["version"] in UPLOT_JS and recorded["license"] == "MIT"


def test_an_unknown_deployment_answers_404_and_offers_the_others(cp):
    client, _ = signed_in_client(cp)
    mid = deployments(cp)[0]["model_id"]
    page = client.get(f"/models/{mid}/metrics", params={"deployment": "<b>nope</b>"})
    assert page.status_code == 404
    assert "No deployment of metrics-tab is called “&lt;b&gt;nope&lt;/b&gt;”" in page.text
    assert 'id="metrics-view"' not in page.text
    for deployment in deployments(cp):
        assert f'<option value="{deployment["id"]}"' in page.text


def test_an_unknown_model_answers_404_and_no_session_redirects(cp):
    client, _ = signed_in_client(cp)
    page = client.get("/models/no-such-model-id/metrics")
    assert page.status_code == 404 and 'href="/" id="back-to-models"' in page.text
    anonymous = httpx.Client(base_url=cp.url, timeout=30.0)
    cp.clients.append(anonymous)
    mid = deployments(cp)[0]["model_id"]
    answer = anonymous.get(f"/models/{mid}/metrics")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next=")
    assert anonymous.get(f"/v1/models/{mid}/metrics").status_code == 401


# -- in a browser -------------------------------------------------------------------------------

def sign_in_at(page: Any, cp: ControlPlaneProcess, path: str) -> None:
    from playwright.sync_api import expect

    page.goto(cp.url + path)
    page.fill("#api_key", cp.admin_key)
    page.click("#sign-in")
    expect(page).to_have_url(cp.url + path)


@pytest.mark.browser
def test_after_predicts_the_charts_show_them_and_the_picker_narrows_to_a_deployment(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    listed = deployments(cp)
    production = next(d for d in listed if d["is_production"])
    other = next(d for d in listed if not d["is_production"])
    mid = production["model_id"]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
    sign_in_at(page, cp, f"/models/{mid}/metrics")
    # Before any traffic: the empty state, and the charts drawn all the same (replicas are known).
    expect(page.locator("#metrics-state")).to_have_attribute("data-state", "live")
    expect(page.locator("#metrics-empty")).to_be_visible()
    expect(page.locator("#chart-requests")).to_have_attribute("data-requests", "0")
    page.screenshot(path=screenshots / "metrics-empty.png", full_page=True)

    for _ in range(5):
        assert cp.client.post(f"/model-{mid}/production/predict", json={}).status_code == 200
    assert cp.client.post(f"/model-{mid}/production/predict", json={"fail": True}).status_code == 500
    for _ in range(2):
        assert cp.client.post(f"/model-{mid}/deployment/{other['id']}/predict", json={}).status_code == 200

    # The page refreshes by itself (every 10 s): the counts arrive without a reload.
    requests_chart = page.locator("#chart-requests")
    expect(requests_chart).to_have_attribute("data-requests", "8", timeout=25_000)
    expect(requests_chart).to_have_attribute("data-errors", "1")
    expect(page.locator("#metrics-empty")).to_be_hidden()
    for chart in ("chart-requests", "chart-errors", "chart-latency", "chart-replicas"):
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)
    # uPlot's legend names the series it draws.
    expect(page.locator("#chart-latency .u-legend")).to_contain_text("p95")
    page.screenshot(path=screenshots / "metrics.png", full_page=True)

    page.select_option("#metrics-deployment", other["id"])
    expect(page).to_have_url(f"{cp.url}/models/{mid}/metrics?deployment={other['id']}")
    expect(page.locator("#chart-requests")).to_have_attribute("data-requests", "2")
    expect(page.locator("#chart-requests")).to_have_attribute("data-errors", "0")
    page.screenshot(path=screenshots / "metrics-deployment.png", full_page=True)
    # A CSP refusal (an inline style) or a script error would show here (the browser's own
    # favicon.ico request answers 404: no page asks for it).
    assert not [e for e in errors if "Failed to load resource" not in e], errors
    assert not missing, missing
