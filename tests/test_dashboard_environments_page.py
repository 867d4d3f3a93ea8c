"""A model's Environments tab against a real control plane with a really pushed model (v1 in
production at two replicas, v2 beside it, and a `staging` environment): over plain HTTP the
cards and the rules (unknown model or environment, no session); in a real browser (headless
Chromium) a rolling promotion of v2 into production, begun through /v1 as a user's CLI would:
the page shows it live (the split moves without a reload, the phase's countdown shows), Pause
holds it (PAUSED), Resume lets it go on, Force roll forward (confirmed) finishes it, and the
finished card goes back to the idle poll; a promotion begun after the page opened shows up on
its card without a reload.

One control plane for the module; screenshots under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from conftest import write_model_dir
from controlplane_checks import eventually, ok
from controlplane_support import ControlPlaneProcess, running_controlplane
from dashboard_support import anonymous_client, model_config, push_active, sign_in_page as sign_in_at, signed_in_client

MODEL = "env-tab"
VERSIONED = """
class Model:
    def predict(self, request):
        return {"version": VERSION}
"""
CONFIG = model_config(MODEL)
# Two steps of one replica (50 %, 100 %), each followed by a wait long enough for the test to
# act inside it (a pause applies at the end of the wait, a forced roll forward at once).
ROLLING = {"rolling_deploy": True, "promotion_cleanup_strategy": "KEEP",
           "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 8}}


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    root = tmp_path_factory.mktemp("dashboard-environments")
    with running_controlplane(root / "cp") as plane:
        for version in ("v1", "v2"):  # v1, the first, becomes production once ACTIVE
            source = write_model_dir(root / version, VERSIONED.replace("VERSION", repr(version)), CONFIG)
            push_active(plane, source, MODEL, deployment_name=version)
        ok(plane.client.post(f"/v1/models/{MODEL}/environments", json={"name": "staging"}), 201)
        ok(plane.client.patch(f"/v1/models/{MODEL}/environments/production",
                              json={"autoscaling_settings": {"min_replica": 2, "max_replica": 2}}))
        yield plane


def deployments(cp: ControlPlaneProcess) -> dict[str, dict[str, Any]]:
    listed = ok(cp.client.get(f"/v1/models/{MODEL}/deployments"))["deployments"]
    return {d["name"]: d for d in listed}


def model_id(cp: ControlPlaneProcess) -> str:
    return deployments(cp)["v1"]["model_id"]


def card_of(html: str, name: str) -> str:
    match = re.search(rf'<section class="environment" data-environment="{name}".*?</section>', html, re.S)
    assert match, f"no card for {name} in:\n{html}"
    return match.group(0)


# -- over HTTP ----------------------------------------------------------------------------------

def test_the_page_lists_the_environments_production_first_with_their_deployment(cp):
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{model_id(cp)}/environments")
    assert page.status_code == 200, page.text
    assert 'aria-current="page">Environments</a>' in page.text
    assert re.findall(r'data-environment="([^"]+)"', page.text) == ["production", "staging"]
    production = card_of(page.text, "production")
    assert '<span class="deployment-name">v1</span>' in production and ">Active</span>" in production
    assert "replicas ready" in production
    assert 'hx-trigger="every 5s"' in production  # no promotion under way: only the idle poll
    staging = card_of(page.text, "staging")
    assert "No deployment yet" in staging and "deployment-name" not in staging


def test_an_unknown_model_or_environment_answers_404(cp):
    client, _ = signed_in_client(cp)
    page = client.get("/models/no-such-model-id/environments")
    assert page.status_code == 404
    assert "No model has the id “no-such-model-id”" in page.text and 'href="/" id="back-to-models"' in page.text
    assert client.get(f"/models/{MODEL}/environments").status_code == 404  # links use ids, not names
    card = client.get(f"/models/{model_id(cp)}/environments/no-such-env/card")
    assert card.status_code == 404 and "No environment “no-such-env”" in card.text


def test_without_a_session_the_page_redirects_to_sign_in_and_back(cp):
    anonymous = anonymous_client(cp)
    path = f"/models/{model_id(cp)}/environments"
    answer = anonymous.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=" + path.replace("/", "%2F")
    assert anonymous.get(path + "/production/card").status_code == 303


# -- in a browser -------------------------------------------------------------------------------

def shown_percent(card: Any) -> int:
    return int(card.locator(".percent-candidate").inner_text().rstrip("%"))


@pytest.mark.browser
def test_a_rolling_promotion_moves_live_pauses_resumes_and_is_forced_forward(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    mid = model_id(cp)
    eventually(lambda: deployments(cp)["v1"]["active_replica_count"] == 2, timeout=120)
    ok(cp.client.patch(f"/v1/models/{MODEL}/environments/production", json={"promotion_settings": ROLLING}))
    v2 = deployments(cp)["v2"]
    begun = ok(cp.client.post(f"/v1/models/{MODEL}/environments/production/promote",
                              json={"deployment_id": v2["id"]}))["in_progress_promotion"]
    assert (begun["kind"], begun["steps"]) == ("rolling", 2), begun

    page = context.new_page()
    sign_in_at(page, cp, f"/models/{mid}/environments")
    card = page.locator('section.environment[data-environment="production"]')
    expect(card.locator(".split-candidate")).to_contain_text("v2")
    expect(card.locator("progress.traffic")).to_have_attribute("max", "100")
    page.screenshot(path=screenshots / "environments-promoting.png", full_page=True)

    card.locator("button.pause").click()  # held at the next step boundary
    expect(card.locator(".promotion-status")).to_have_text("PAUSED", timeout=30_000)
    expect(card.locator("button.resume")).to_be_visible()
    paused_at = shown_percent(card)
    assert paused_at < 100, "paused after the last step: the 8 s waits were too short for this machine"
    assert card.locator("progress.traffic").get_attribute("value") == str(paused_at)
    page.screenshot(path=screenshots / "environments-paused.png", full_page=True)

    card.locator("button.resume").click()  # the page reloads once on the API's yes
    expect(card.locator("button.pause")).to_be_visible()
    page.evaluate("window.notReloaded = true")  # gone if the page reloads from here on
    deadline = time.monotonic() + 120
    seen_countdown = False
    while shown_percent(card) == paused_at:  # the card re-reads itself; nothing here reloads
        assert time.monotonic() < deadline, card.inner_text()
        time.sleep(0.2)
    moved_to = shown_percent(card)
    assert moved_to > paused_at and page.evaluate("window.notReloaded === true")
    assert card.locator("progress.traffic").get_attribute("value") == str(moved_to)
    deadline = time.monotonic() + 30  # the step's stabilization wait follows, counting down
    while not seen_countdown and card.locator(".promotion-status").inner_text() != "SUCCEEDED":
        seen_countdown = "s left" in card.locator(".phase").inner_text()
        assert time.monotonic() < deadline, card.inner_text()
        time.sleep(0.2)
    page.screenshot(path=screenshots / "environments-moved.png", full_page=True)

    asked: list[str] = []

    def say_yes(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", say_yes)
    card.locator("button.force-roll-forward").click()
    expect(card.locator(".promotion-status")).to_have_text("SUCCEEDED")
    assert asked and asked[0].startswith("Force roll forward?"), asked
    assert seen_countdown
    expect(card.locator(".percent-candidate")).to_have_text("100%")
    expect(card.locator(".deployment-name")).to_have_text("v2")
    expect(card.locator("button")).to_have_count(0)  # nothing left to steer
    assert card.get_attribute("hx-trigger") == "every 5s"  # the finished card is back to the idle poll
    page.screenshot(path=screenshots / "environments-finished.png", full_page=True)
    after = ok(cp.client.get(f"/v1/models/{MODEL}/environments/production/promotion"))["promotion"]
    assert (after["status"], after["percent_traffic_to_new_version"]) == ("SUCCEEDED", 100), after


@pytest.mark.browser
def test_a_promotion_begun_after_the_page_opened_shows_without_a_reload(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in_at(page, cp, f"/models/{model_id(cp)}/environments")
    card = page.locator('section.environment[data-environment="staging"]')
    expect(card).to_contain_text("No deployment yet")
    assert card.get_attribute("hx-trigger") == "every 5s"
    page.evaluate("window.notReloaded = true")
    v1 = deployments(cp)["v1"]
    ok(cp.client.post(f"/v1/models/{MODEL}/environments/staging/promote", json={"deployment_id": v1["id"]}))
    # Within the idle poll (then the live one, were it rolling), the card shows what it serves now.
    expect(card.locator(".deployment-name")).to_have_text("v1", timeout=30_000)
    expect(card).not_to_contain_text("No deployment yet")
    assert page.evaluate("window.notReloaded === true")
    page.screenshot(path=screenshots / "environments-promoted-elsewhere.png", full_page=True)


# -- over HTTP, after the browser's promotions (or without them) ----------------------------------

def test_an_instant_promotion_shows_as_the_environments_last_promotion(cp):
    ok(cp.client.post(f"/v1/models/{MODEL}/environments", json={"name": "qa"}), 201)
    client, _ = signed_in_client(cp)
    before = card_of(client.get(f"/models/{model_id(cp)}/environments").text, "qa")
    assert "No deployment yet" in before and 'class="promotion' not in before
    candidate = next(d for d in deployments(cp).values() if not d["is_production"])
    ok(cp.client.post(f"/v1/models/{MODEL}/environments/qa/promote", json={"deployment_id": candidate["id"]}))

    card = client.get(f"/models/{model_id(cp)}/environments/qa/card")
    assert card.status_code == 200, card.text
    assert "Last promotion (instant)" in card.text
    assert re.search(r'class="promotion-status[^"]*">SUCCEEDED<', card.text), card.text
    assert re.search(rf'class="split-candidate">{candidate["name"]} <strong class="percent-candidate">100%<', card.text)
    assert 'class="phase"' not in card.text and "<button" not in card.text  # over: no phase, nothing to steer
    assert 'hx-trigger="every 5s"' in card.text
