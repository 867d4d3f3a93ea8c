"""A model's Logs tab against a real control plane with a really pushed model: over plain HTTP
the page and its rules (the picker, the default deployment, unknown model or deployment, no
session); in a real browser (headless Chromium) the live logs: the build's lines are there, a
line the model prints while answering a predict appears without a reload (as text, even when
it looks like HTML), the text filter hides the other lines, the kind picker asks the endpoint
for build lines only.

One control plane for the module; screenshots under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from controlplane_support import ControlPlaneProcess
from cuttable_proxy import cuttable_proxy
from dashboard_support import anonymous_client, pushed_control_plane, sign_in_page as sign_in_at, signed_in_client

MODEL = "logs-tab"
PRINTS = """
class Model:
    def predict(self, request):
        print(f"predicting {request['say']}", flush=True)
        return {"said": request["say"]}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    # Two pushes: the first becomes production once ACTIVE; the second does not.
    with pushed_control_plane(tmp_path_factory.mktemp("dashboard-logs"), MODEL, PRINTS, pushes=2) as plane:
        yield plane


def deployments(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    return cp.client.get(f"/v1/models/{MODEL}/deployments").raise_for_status().json()["deployments"]


def logs_url(html: str) -> str:
    match = re.search(r'id="log-view"[^>]*data-logs-url="([^"]+)"', html)
    assert match, html
    return match.group(1)


# -- over HTTP ----------------------------------------------------------------------------------

def test_the_page_offers_every_deployment_and_follows_production_by_default(cp):
    client, _ = signed_in_client(cp)
    listed = deployments(cp)
    production = next(d for d in listed if d["is_production"])
    other = next(d for d in listed if not d["is_production"])
    mid = production["model_id"]
    page = client.get(f"/models/{mid}/logs")
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Logs</a>' in page.text
    for deployment in listed:
        assert f'<option value="{deployment["id"]}"' in page.text
    assert f'<option value="{production["id"]}" selected>{production["name"]} (production)</option>' in page.text
    assert logs_url(page.text) == f"/v1/models/{mid}/deployments/{production['id']}/logs"
    # The endpoint the page's script reads answers this browser's session (a GET: no CSRF header).
    lines = client.get(logs_url(page.text), params={"kind": "build"})
    assert lines.status_code == 200 and "environment ready" in lines.text, lines.text
    # Another deployment by id, and production by its name in the URL, as `truss logs` takes them.
    chosen = client.get(f"/models/{mid}/logs", params={"deployment": other["id"]})
    assert logs_url(chosen.text).endswith(f"/deployments/{other['id']}/logs")
    assert f'<option value="{other["id"]}" selected>' in chosen.text
    by_word = client.get(f"/models/{mid}/logs", params={"deployment": "production"})
    assert logs_url(by_word.text).endswith(f"/deployments/{production['id']}/logs")


def test_an_unknown_deployment_answers_404_and_offers_the_others(cp):
    client, _ = signed_in_client(cp)
    mid = deployments(cp)[0]["model_id"]
    page = client.get(f"/models/{mid}/logs", params={"deployment": "<b>nope</b>"})
    assert page.status_code == 404
    assert "No deployment of logs-tab is called “&lt;b&gt;nope&lt;/b&gt;”" in page.text
    assert 'id="log-view"' not in page.text
    for deployment in deployments(cp):  # the picker still lists what exists
        assert f'<option value="{deployment["id"]}"' in page.text


def test_an_unknown_model_answers_404_with_a_link_back_to_models(cp):
    client, _ = signed_in_client(cp)
    page = client.get("/models/no-such-model-id/logs")
    assert page.status_code == 404
    assert "No model has the id “no-such-model-id”" in page.text and 'href="/" id="back-to-models"' in page.text
    assert client.get(f"/models/{MODEL}/logs").status_code == 404  # links use ids; a name is not looked up


def test_without_a_session_the_page_redirects_to_sign_in_and_back(cp):
    anonymous = anonymous_client(cp)
    path = f"/models/{deployments(cp)[0]['model_id']}/logs"
    answer = anonymous.get(path, params={"deployment": "production"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=" + (path + "?deployment=production").replace(
        "/", "%2F").replace("?", "%3F").replace("=", "%3D")
    assert anonymous.get("/models/no-such-model-id/logs").status_code == 303  # no hint what exists
    assert anonymous.get(f"/v1/models/{MODEL}/deployments/production/logs").status_code == 401


def test_a_model_without_deployments_says_so(cp):
    from truss_cli.controlplane.store import Store

    with Store.open(cp.data_dir) as store:
        made = store.models.create("no-logs-model")
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{made.id}/logs")
    assert page.status_code == 200 and "No deployments yet" in page.text and 'id="log-view"' not in page.text


# -- in a browser -------------------------------------------------------------------------------

@pytest.mark.browser
def test_a_printed_line_appears_live_and_the_filters_narrow_the_lines(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    production = next(d for d in deployments(cp) if d["is_production"])
    mid = production["model_id"]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in_at(page, cp, f"/models/{mid}/logs")
    lines = page.locator("#log-lines li")
    expect(page.locator("#log-state")).to_have_text("following")
    build_line = lines.filter(has_text="environment ready")
    expect(build_line.first).to_be_visible()
    expect(build_line.first.locator(".source")).to_have_text("build")
    expect(build_line.first.locator("time")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"))
    before = lines.count()

    # The model prints while answering; the line arrives on the open stream, as text.
    said = "<img src=x id=injected> hello from the page test"
    answer = cp.client.post(f"/model-{mid}/production/predict", json={"say": said})
    assert answer.status_code == 200, answer.text
    printed = lines.filter(has_text=f"predicting {said}")
    expect(printed).to_have_count(1)
    expect(printed.locator(".source")).to_have_text(re.compile(r"^replica:"))
    assert page.locator("#injected").count() == 0  # shown as text, never parsed as HTML
    assert lines.count() > before
    # One time line, whichever log a line came from (the readers run side by side).
    times = page.locator("#log-lines li time").evaluate_all("nodes => nodes.map(n => n.dateTime)")
    assert times == sorted(times), times
    page.screenshot(path=screenshots / "logs.png", full_page=True)

    # The filter hides the lines without its text (and shows them again when cleared).
    page.fill("#log-filter", "HELLO FROM THE PAGE")
    expect(lines.locator("visible=true")).to_have_count(1)
    expect(build_line.first).to_be_hidden()
    expect(page.locator("#log-count")).to_contain_text("1 of ")
    page.screenshot(path=screenshots / "logs-filtered.png", full_page=True)
    page.fill("#log-filter", "")
    expect(build_line.first).to_be_visible()

    # Build only: the endpoint is asked for kind=build, so no replica line comes.
    page.select_option("#log-kind", "build")
    expect(build_line.first).to_be_visible()
    sources = set(page.locator("#log-lines li .source").all_inner_texts())
    assert sources == {"build"}, sources
    # An ACTIVE deployment's build log is whole: the stream ends and the page says so.
    expect(page.locator("#log-state")).to_have_text(re.compile("^ended"))
    page.screenshot(path=screenshots / "logs-build-only.png", full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e], errors


@pytest.mark.browser
def test_the_picker_switches_to_another_deployment_s_logs(cp, context):
    from playwright.sync_api import expect

    other = next(d for d in deployments(cp) if not d["is_production"])
    mid = other["model_id"]
    page = context.new_page()
    sign_in_at(page, cp, f"/models/{mid}/logs")
    page.select_option("#log-deployment", other["id"])
    expect(page).to_have_url(f"{cp.url}/models/{mid}/logs?deployment={other['id']}")
    said = "only the other one"
    answer = cp.client.post(f"/model-{mid}/deployment/{other['id']}/predict", json={"say": said})
    assert answer.status_code == 200, answer.text
    expect(page.locator("#log-lines li").filter(has_text=f"predicting {said}")).to_have_count(1)


@pytest.mark.browser
def test_a_lost_stream_reconnects_with_backoff_and_shows_no_line_twice(cp, context, screenshots: Path):
    """The page reaches the plane through a proxy the test cuts (a network blip; a restarting
    plane looks the same to the browser): the page says it is reconnecting, retries while
    connections are refused, then follows again from where it was, with the line printed while
    it was cut and without repeating the lines it already showed."""
    from playwright.sync_api import expect

    production = next(d for d in deployments(cp) if d["is_production"])
    mid = production["model_id"]

    def predict(say: str) -> None:
        answer = cp.client.post(f"/model-{mid}/production/predict", json={"say": say})
        assert answer.status_code == 200, answer.text

    with cuttable_proxy(cp.url) as proxy:
        page = context.new_page()
        sign_in_at(page, cp, f"/models/{mid}/logs", base_url=proxy.url)
        state = page.locator("#log-state")
        lines = page.locator("#log-lines li")
        expect(state).to_have_text("following")
        predict("before the blip")
        expect(lines.filter(has_text="predicting before the blip")).to_have_count(1)

        proxy.refusing = True
        assert proxy.cut() > 0
        expect(state).to_have_attribute("data-state", "reconnecting")
        predict("during the blip")  # straight to the plane: the page is cut off from it
        expect(state).to_contain_text("attempt 3", timeout=30_000)  # it kept trying, further apart
        page.screenshot(path=screenshots / "logs-reconnecting.png", full_page=True)
        proxy.refusing = False

        expect(state).to_have_text("following (reconnected)", timeout=30_000)
        expect(lines.filter(has_text="predicting during the blip")).to_have_count(1)
        expect(lines.filter(has_text="predicting before the blip")).to_have_count(1)
        shown = page.locator("#log-lines li").evaluate_all(
            "nodes => nodes.map(n => n.dataset.at + ' ' + n.textContent)")
        assert len(shown) == len(set(shown)), [line for line in shown if shown.count(line) > 1]
        predict("after the blip")  # and the new stream follows
        expect(lines.filter(has_text="predicting after the blip")).to_have_count(1)
