"""A model's Overview page (`/models/{id}`), against a real control plane serving a really
pushed model: over plain HTTP (the rules: sign-in redirect, 404, what the page shows, the
README's sanitising) and in a real browser (editing the description and README, copying the
invocation code and running it against the gateway). Also: `truss push` names the page.

Screenshots go under the directory the `screenshots` fixture prints.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser_support import browser, context, screenshots  # noqa: F401 (fixtures)
from conftest import write_model_dir
from controlplane_support import ControlPlaneProcess
from dashboard_support import ECHO, anonymous_client, pushed_control_plane, sign_in_page, signed_in_client, truss_cli
from truss_cli.controlplane.store import Store

MODEL = "overview-echo"
BARE = "bare-model"  # made in the store: no deployment, so Type and Framework are "Custom"
CONFIG = f"""\
model_name: {MODEL}
python_version: py311
model_metadata:
  model_type: text-classification
  framework: sklearn
"""
HOSTILE_README = """# Hello

<script>document.title = "owned"</script>
<a href="javascript:alert(1)" id="evil">click me</a>
[also evil](javascript:alert(2))

[docs](https://example.com/docs)
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with pushed_control_plane(tmp_path_factory.mktemp("dashboard-model-page"), MODEL, config=CONFIG) as plane:
        plane.client.post(f"/v1/models/{MODEL}/environments", json={"name": "staging"}).raise_for_status()
        with Store.open(plane.data_dir) as store:
            store.models.create(BARE)
        yield plane


def model_id(cp: ControlPlaneProcess, name: str = MODEL) -> str:
    return cp.client.get(f"/v1/models/{name}").raise_for_status().json()["id"]


# --- over HTTP -----------------------------------------------------------------------------

def test_without_a_session_the_page_redirects_to_sign_in(cp):
    client = anonymous_client(cp)
    answer = client.get(f"/models/{model_id(cp)}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/sign-in?next=%2Fmodels%2F{model_id(cp)}"


def test_an_unknown_model_is_a_404_page_linking_back_to_models(cp):
    client, _ = signed_in_client(cp)
    answer = client.get("/models/no-such-id")
    assert answer.status_code == 404
    assert "No model has the id “no-such-id”" in answer.text
    assert '<a href="/" id="back-to-models">Back to Models</a>' in answer.text
    # Pages link by id: a model's name is not an address of its page.
    assert client.get(f"/models/{MODEL}").status_code == 404


def test_the_models_page_links_each_model_to_its_page(cp):
    client, _ = signed_in_client(cp)
    listing = client.get("/").text
    assert f'<a href="/models/{model_id(cp)}">{MODEL}</a>' in listing
    assert f'<a href="/models/{model_id(cp, BARE)}">{BARE}</a>' in listing


def test_the_page_shows_type_framework_and_code_for_production_each_environment_and_deployment(cp):
    client, _ = signed_in_client(cp)
    ident = model_id(cp)
    page = client.get(f"/models/{ident}")
    assert page.status_code == 200, page.text
    assert '<dd id="model-type">text-classification</dd>' in page.text
    assert '<dd id="model-framework">sklearn</dd>' in page.text
    base = cp.url.rstrip("/")
    for url in (f"{base}/model-{ident}/production/predict", f"{base}/model-{ident}/environments/staging/predict"):
        assert f'<code class="url">{url}</code>' in page.text
    deployment = cp.client.get(f"/v1/models/{ident}/deployments").raise_for_status().json()["deployments"][0]
    assert f"{base}/model-{ident}/deployment/{deployment['id']}/predict" in page.text
    assert 'data-invocation="deployment:deployment-1"' in page.text
    assert "$TRUSS_API_KEY" in page.text and cp.admin_key not in page.text  # a placeholder, never a key
    bare = client.get(f"/models/{model_id(cp, BARE)}").text
    assert '<dd id="model-type">Custom</dd>' in bare and '<dd id="model-framework">Custom</dd>' in bare
    assert "nothing in production yet" in bare


def test_user_text_is_escaped_and_the_readme_sanitised(cp):
    client, csrf = signed_in_client(cp)
    ident = model_id(cp, BARE)
    edited = client.patch(f"/v1/models/{ident}", json={
        "description": '<img src=x onerror="alert(1)">', "readme": HOSTILE_README}, headers={"X-CSRF-Token": csrf})
    assert edited.status_code == 200, edited.text
    page = client.get(f"/models/{ident}").text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page  # the description, as text
    readme = re.search(r'<div id="readme" class="readme shown">(.*?)</div>\s*<button', page, re.S).group(1)
    assert "<h1>Hello</h1>" in readme
    assert "<script" not in readme and "javascript:" not in readme.replace("[also evil](javascript:alert(2))", "")
    assert '<a href="https://example.com/docs" rel="noopener noreferrer nofollow">docs</a>' in readme
    # The editor holds the README as it was written (escaped), so an edit starts from it.
    assert "&lt;script&gt;document.title = &#34;owned&#34;&lt;/script&gt;" in page


def test_push_prints_the_models_dashboard_url(cp, tmp_path: Path):
    truss, env = truss_cli(cp, tmp_path / "home")
    source = write_model_dir(tmp_path / "pushed", ECHO, "model_name: pushed-for-url\npython_version: py311\n")
    text = subprocess.run([*truss, "push", str(source), "--remote", "here"], env=env, capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    ident = model_id(cp, "pushed-for-url")
    assert f"Dashboard: {cp.url}/models/{ident}" in text.stdout.splitlines()
    again = subprocess.run([*truss, "push", str(source), "--remote", "here", "-o", "json"], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["dashboard_url"] == f"{cp.url}/models/{ident}"


# --- in a browser --------------------------------------------------------------------------

def signed_in_page(cp: ControlPlaneProcess, context: Any, path: str) -> Any:
    page = context.new_page()
    sign_in_page(page, cp, path)
    return page


@pytest.mark.browser
def test_editing_the_description_and_readme_persists_after_reload(cp, context, screenshots: Path):
    from playwright.sync_api import expect

    ident = model_id(cp)
    page = signed_in_page(cp, context, f"/models/{ident}")
    page.screenshot(path=screenshots / "model-overview.png", full_page=True)
    page.click("#edit-description")
    page.fill("#description-form input[name=description]", "Echoes its input back")
    page.click("#save-description")
    expect(page.locator("#description")).to_have_text("Echoes its input back")
    page.click("#edit-readme")
    page.fill("#readme-form textarea", HOSTILE_README + "\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    page.screenshot(path=screenshots / "model-overview-editing-readme.png", full_page=True)
    page.click("#save-readme")
    expect(page.locator("#readme h1")).to_have_text("Hello")
    page.reload()
    expect(page.locator("#description")).to_have_text("Echoes its input back")
    expect(page.locator("#readme td").first).to_have_text("1")
    # The README's script never ran, and its javascript: links lead nowhere.
    assert page.title() != "owned"
    expect(page.locator("#readme script")).to_have_count(0)
    assert page.locator("#readme a", has_text="click me").get_attribute("href") is None
    expect(page.locator('#readme a[href^="javascript"]')).to_have_count(0)
    expect(page.locator('#readme a[href="https://example.com/docs"]')).to_have_count(1)
    page.screenshot(path=screenshots / "model-overview-edited.png", full_page=True)
    assert cp.client.get(f"/v1/models/{ident}").json()["description"] == "Echoes its input back"


@pytest.mark.browser
def test_a_refused_edit_shows_the_servers_message(cp, context):
    from playwright.sync_api import expect

    page = signed_in_page(cp, context, f"/models/{model_id(cp)}")
    page.click("#edit-description")
    page.fill("#description-form input[name=description]", "x" * 10_001)
    page.click("#save-description")
    expect(page.locator("#action-error")).to_contain_text("a description has at most 10000 characters")


@pytest.mark.browser
def test_the_copied_python_code_works_as_shown(cp, context, screenshots: Path, tmp_path: Path):
    from playwright.sync_api import expect

    ident = model_id(cp)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cp.url)
    page = signed_in_page(cp, context, f"/models/{ident}")
    python = page.locator('[data-invocation="production"] .snippet[data-lang="python"]')
    python.locator("button.copy").click()
    expect(python.locator(".copy-note")).to_have_text("Copied")
    page.screenshot(path=screenshots / "model-overview-copied.png", full_page=True)
    code = page.evaluate("navigator.clipboard.readText()")
    script = tmp_path / "call.py"
    script.write_text(code)
    ran = subprocess.run([sys.executable, str(script)], env={**os.environ, "TRUSS_API_KEY": cp.admin_key},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    direct = cp.client.post(f"/model-{ident}/production/predict", json={}).raise_for_status().json()
    assert ast.literal_eval(ran.stdout.strip()) == direct == {"echo": {}}  # it prints the answer (a dict)


@pytest.mark.browser
def test_the_copied_curl_line_works_as_shown(cp, context):
    """The cURL line as copied from the page, run by a shell with the key in TRUSS_API_KEY,
    sends JSON (its Content-Type says so) and prints what a direct predict answers."""
    from playwright.sync_api import expect

    ident = model_id(cp)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cp.url)
    page = signed_in_page(cp, context, f"/models/{ident}")
    curl = page.locator('[data-invocation="production"] .snippet[data-lang="curl"]')
    curl.locator("button.copy").click()
    expect(curl.locator(".copy-note")).to_have_text("Copied")
    line = page.evaluate("navigator.clipboard.readText()")
    assert '-H "Content-Type: application/json"' in line, line
    ran = subprocess.run(["sh", "-c", line], env={**os.environ, "TRUSS_API_KEY": cp.admin_key},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    direct = cp.client.post(f"/model-{ident}/production/predict", json={}).raise_for_status().json()
    assert json.loads(ran.stdout) == direct == {"echo": {}}


@pytest.mark.browser
def test_without_the_clipboard_api_copy_selects_the_code(cp, browser):
    """No permission granted and the Clipboard API refused (as on plain http off loopback,
    where it does not exist): the code is selected for Ctrl+C instead."""
    from playwright.sync_api import expect

    context = browser.new_context()
    try:
        page = signed_in_page(cp, context, f"/models/{model_id(cp)}")
        page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
        page.reload()
        curl = page.locator('[data-invocation="production"] .snippet[data-lang="curl"]')
        curl.locator("button.copy").click()
        expect(curl.locator(".copy-note")).to_contain_text("press Ctrl+C")
        assert page.evaluate("window.getSelection().toString()") == curl.locator("code").inner_text()
    finally:
        context.close()
