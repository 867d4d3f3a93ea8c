"""A model's Development tab and the sync history behind it, against a real control plane with a
real development deployment (process runtime, a real development replica): patches are sent
the way `truss push --watch` sends them (tests/test_controlplane_patches.py's Watcher: real
file edits, real envelopes).

Over HTTP: `GET .../patches/history` lists a sync with its files, action and duration, and a
syntax error's sync as failed with its error; the page shows the patch hash, the staged tree and
the syncs; a model without a development deployment says to run `truss push --watch`; 404s; no
session → sign-in, 401; the /v1 wake route and its CSRF check. In Chromium: the hash and the
status, a sync made while the page is open appearing without a reload, and Wake bringing a
deployment scaled to zero back (screenshot `development.png`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from controlplane_checks import eventually, ok, opened_store, refused
from controlplane_support import ControlPlaneProcess, running_controlplane
from dashboard_support import signed_in_client
from test_controlplane_patches import MODEL, Watcher, envelope_between, model_root, predict, push_development, send

NAME = "devtab"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("dashboard-development") / "cp") as plane:
        yield plane


@pytest.fixture(scope="module")
def dev(cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Watcher]:
    root = model_root(tmp_path_factory.mktemp("devtab"), NAME)
    return push_development(cp, root, NAME), Watcher(root)


def history_url(deployment: dict[str, Any]) -> str:
    return f"/v1/models/{deployment['model_id']}/deployments/development/patches/history"


def history(cp: ControlPlaneProcess, deployment: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The syncs, once there are `count` (a sync is recorded just after its answer is sent)."""
    def read() -> list[dict[str, Any]] | None:
        syncs = ok(cp.client.get(history_url(deployment)))["syncs"]
        return syncs if len(syncs) >= count else None
    return eventually(read, timeout=30)


# -- over HTTP ----------------------------------------------------------------------------------

def test_the_history_lists_each_sync_with_its_files_action_and_time_and_a_failure_with_its_error(cp, dev):
    deployment, watcher = dev
    before = len(ok(cp.client.get(history_url(deployment)))["syncs"])
    running = ok(cp.client.get(history_url(deployment)))["running_patch_point"]["hash"]
    patch, envelope = watcher.set_marker("b")
    assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
    swapped = history(cp, deployment, before + 1)[0]
    assert swapped["action"] == "hot_swap" and swapped["error"] is None, swapped
    assert (swapped["from_tree"], swapped["to_tree"]) == (running, patch.next_hash)
    assert swapped["changes"] == {"added": 0, "updated": 1, "deleted": 0,
                                  "paths": [{"path": "model/model.py", "change": "updated"}]}
    assert swapped["ms"] > 0 and swapped["reason"]

    # A syntax error: the sync fails (422), the old code serves, and the history says why.
    broken, envelope = watcher.edit("model/model.py", MODEL.format(marker="broken") + "\ndef oops(:\n")
    refused(send(cp, deployment, envelope), 422, "PATCH_FAILED")
    failed = history(cp, deployment, before + 2)[0]
    assert failed["action"] == "failed" and failed["to_tree"] == broken.next_hash, failed
    assert failed["error"].startswith("syntax error: invalid syntax (model/model.py, line "), failed
    assert "\n" not in failed["error"]  # its first line
    assert predict(cp.client, deployment["model_id"])["marker"] == "b"

    # Added and deleted files count as such; the fix recovers.
    base = watcher.tree.manifest
    (watcher.root / "model" / "helper.py").write_text("X = 1\n")
    (watcher.root / "model" / "model.py").write_text(MODEL.format(marker="c"))
    watcher.tree.update([watcher.root / "model" / "helper.py", watcher.root / "model" / "model.py"])
    _, envelope = envelope_between(base, watcher)  # one patch: helper.py added and model.py fixed
    assert ok(send(cp, deployment, envelope))["action"] in ("hot_swap", "restart")
    fixed = history(cp, deployment, before + 3)[0]
    assert fixed["changes"]["added"] == 1 and fixed["changes"]["updated"] == 1, fixed
    assert {p["path"] for p in fixed["changes"]["paths"]} == {"model/helper.py", "model/model.py"}
    assert [s["action"] for s in ok(cp.client.get(history_url(deployment), params={"limit": 1}))["syncs"]] \
        == [fixed["action"]]

    # The page shows the same: the running hash (short, full in its title) and the syncs.
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{deployment['model_id']}/development")
    assert page.status_code == 200, page.text
    running_now = ok(cp.client.get(history_url(deployment)))["running_patch_point"]["hash"]
    assert f'<code id="patch-hash" title="{running_now}">{running_now[:12]}</code>' in page.text
    assert 'aria-current="page">Development</a>' in page.text
    rows = re.findall(r'<tr class="sync sync-([a-z-]+)"', page.text)
    assert rows[:3] == [fixed["action"].replace("_", "-"), "failed", "hot-swap"], rows
    assert "syntax error: invalid syntax" in page.text and "<code>~model/model.py</code>" in page.text
    assert "<code>+model/helper.py</code>" in page.text
    assert "scales to zero in " in page.text  # awake, nobody keeps it so
    assert f"/model-{deployment['model_id']}/development/predict" in page.text


def test_the_history_refuses_a_bad_limit_and_names_what_exists_for_an_unknown_deployment(cp, dev):
    deployment, _ = dev
    body = refused(cp.client.get(history_url(deployment), params={"limit": 0}), 400, "BAD_LIMIT")
    assert "between 1 and 50" in body["error"]
    body = refused(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/nope/patches/history"), 404,
                   "NOT_FOUND")
    assert body["detail"]["existing"] == [f"development ({deployment['id']})"], body


def test_a_model_without_a_development_deployment_says_to_run_push_watch(cp):
    with opened_store(cp) as store:
        made = store.models.create("published-only-model")
    client, _ = signed_in_client(cp)
    page = client.get(f"/models/{made.id}/development")
    assert page.status_code == 200
    assert "truss push --watch --model-name published-only-model" in page.text
    assert 'id="development-live"' not in page.text


def test_unknown_model_404_and_without_a_session_sign_in_or_401(cp, dev):
    deployment, _ = dev
    client, _ = signed_in_client(cp)
    page = client.get("/models/no-such-model-id/development")
    assert page.status_code == 404 and "No model has the id “no-such-model-id”" in page.text
    assert client.get("/models/no-such-model-id/development/live").status_code == 404
    anonymous = httpx.Client(base_url=cp.url, timeout=30.0)
    cp.clients.append(anonymous)
    for path in (f"/models/{deployment['model_id']}/development", f"/models/{deployment['model_id']}/development/live"):
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next="), path
    assert anonymous.get(history_url(deployment)).status_code == 401
    assert anonymous.post(f"/v1/models/{deployment['model_id']}/deployments/development/wake").status_code == 401


def test_the_wake_route_keeps_it_awake_and_wants_the_csrf_token_from_a_session(cp, dev):
    deployment, _ = dev
    wake = f"/v1/models/{deployment['model_id']}/deployments/development/wake"
    client, csrf = signed_in_client(cp)
    refused(client.post(wake), 403, "CSRF_FAILED")
    answer = ok(client.post(wake, headers={"X-CSRF-Token": csrf}), 202)
    assert answer == {"model_id": deployment["model_id"], "deployment_id": deployment["id"], "waking_up": False}
    # What `truss watch` calls every 60 s, the gateway's route, counts the same.
    ok(cp.client.post(f"/model-{deployment['model_id']}/development/wake"), 202)
    page = client.get(f"/models/{deployment['model_id']}/development")
    assert "kept awake by a watch session" in page.text, page.text
    refused(client.post(f"/v1/models/{deployment['model_id']}/deployments/nope/wake",
                        headers={"X-CSRF-Token": csrf}), 404, "NOT_FOUND")


# -- in a browser -------------------------------------------------------------------------------

def sign_in_at(page: Any, cp: ControlPlaneProcess, path: str) -> None:
    from playwright.sync_api import expect

    page.goto(cp.url + path)
    page.fill("#api_key", cp.admin_key)
    page.click("#sign-in")
    expect(page).to_have_url(cp.url + path)


def deployment_view(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    return ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}"))


@pytest.mark.browser
def test_a_sync_appears_live_and_wake_brings_it_back_from_zero(cp, dev, context, screenshots: Path):
    from playwright.sync_api import expect

    deployment, watcher = dev
    mid = deployment["model_id"]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in_at(page, cp, f"/models/{mid}/development")
    running = ok(cp.client.get(history_url(deployment)))["running_patch_point"]["hash"]
    expect(page.locator("#patch-hash")).to_have_text(running[:12])
    expect(page.locator("#patch-hash")).to_have_attribute("title", running)
    expect(page.locator("#development-status")).to_have_text("Active")

    # A save synced while the page is open shows up without a reload (the marker survives).
    page.evaluate("window.stillThisPage = true")
    patch, envelope = watcher.edit("model/live_page.py", "SEEN = True\n")
    assert ok(send(cp, deployment, envelope))["action"] in ("hot_swap", "restart")
    newest = page.locator("#syncs tbody tr").first
    expect(newest.locator(".files")).to_contain_text("+model/live_page.py")
    expect(newest.locator(".sync-action")).to_have_text(re.compile("^(hot swap|restart)$"))
    expect(page.locator("#patch-hash")).to_have_text(patch.next_hash[:12])
    assert page.evaluate("window.stillThisPage") is True
    page.screenshot(path=screenshots / "development.png", full_page=True)

    # Asleep, as the reconciler puts it after its idle time; the page says so, Wake starts it.
    with opened_store(cp) as store:
        assert store.deployments.scale_to_zero(deployment["id"])
    expect(page.locator("#development-status")).to_have_text("Scaled to zero")
    expect(page.locator("#development-sleep")).to_contain_text("asleep")
    eventually(lambda: deployment_view(cp, deployment)["active_replica_count"] == 0)  # its replica is stopped
    page.screenshot(path=screenshots / "development-asleep.png", full_page=True)
    page.click("#wake")
    expect(page.locator("#development-status")).to_have_text("Active", timeout=120_000)
    assert predict(cp.client, mid)["marker"]  # it serves again, the patched code
    assert not [e for e in errors if "Content Security Policy" in e], errors
