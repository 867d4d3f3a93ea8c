"""The dashboard's sign-in, session cookie and CSRF rules against a real control plane, over
HTTP without a browser (tests/test_dashboard_browser.py drives the same with Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from controlplane_support import running_controlplane
from dashboard_support import anonymous_client, sign_in, sign_in_form, signed_in_client
from truss_cli.controlplane.session_cookies import COOKIE
from truss_cli.controlplane.store import Store


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory):
    with running_controlplane(tmp_path_factory.mktemp("dashboard") / "cp") as plane:
        yield plane


anonymous = anonymous_client


def test_a_page_without_a_session_redirects_to_sign_in_and_back(cp):
    client = anonymous(cp)
    answer = client.get("/", params={"q": "hello"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2F%3Fq%3Dhello"
    signed = sign_in(client, cp.admin_key, "/?q=hello")
    assert signed.status_code == 303 and signed.headers["location"] == "/?q=hello"
    cookie = next(c for c in client.cookies.jar if c.name == COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/"
    assert "samesite=strict" in signed.headers["set-cookie"].lower() and "secure" not in signed.headers["set-cookie"].lower()
    assert cp.admin_key not in signed.headers["set-cookie"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "models"])
def test_next_only_leads_to_paths_on_this_site(cp, target):
    signed = sign_in(anonymous(cp), cp.admin_key, target)
    assert signed.status_code == 303 and signed.headers["location"] == "/"


def test_a_wrong_key_and_an_invoke_key_cannot_sign_in(cp):
    client = anonymous(cp)
    wrong = sign_in(client, "abc.not-a-key")
    assert wrong.status_code == 401 and "Unknown or revoked API key" in wrong.text
    invoke = cp.client.post("/v1/api_keys", json={"scope": "invoke"}).raise_for_status().json()["key"]
    refused = sign_in(client, invoke)
    assert refused.status_code == 403 and "invoke key" in refused.text
    assert COOKIE not in client.cookies
    assert client.get("/").status_code == 303


def test_the_sign_in_form_refuses_a_post_without_its_own_token(cp):
    """Login CSRF: another site's form cannot sign this browser in under its own key."""
    client = anonymous(cp)
    sign_in_form(client)
    forged = client.post("/sign-in", data={"api_key": cp.admin_key, "sign_in_token": "guessed", "next": "/"})
    assert forged.status_code == 403 and "expired or came from another site" in forged.text
    fresh = anonymous(cp)
    assert fresh.post("/sign-in", data={"api_key": cp.admin_key, "sign_in_token": "x"}).status_code == 403
    assert COOKIE not in client.cookies and COOKIE not in fresh.cookies


def test_with_the_cookie_changes_need_the_csrf_token_and_reads_do_not(cp):
    client, csrf = signed_in_client(cp)
    assert client.get("/v1/models").status_code == 200
    refused = client.post("/v1/secrets", json={"name": "S1", "value": "v"})
    assert refused.status_code == 403 and refused.json()["error_code"] == "CSRF_FAILED"
    wrong = client.post("/v1/secrets", json={"name": "S1", "value": "v"}, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403 and wrong.json()["error_code"] == "CSRF_FAILED"
    made = client.post("/v1/secrets", json={"name": "S1", "value": "v"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 200, made.text
    assert [s["name"] for s in cp.client.get("/v1/secrets").json()["secrets"]] == ["S1"]


def test_without_key_or_session_the_api_answers_401_and_the_key_path_needs_no_csrf(cp):
    client = anonymous(cp)
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/secrets", json={"name": "S2", "value": "v"}).status_code == 401
    assert cp.client.post("/v1/secrets", json={"name": "S2", "value": "v"}).status_code == 200


def test_a_tampered_cookie_opens_nothing(cp):
    client, _ = signed_in_client(cp)
    value = client.cookies[COOKIE]
    token, _, signature = value.rpartition(".")
    for forged in (f"{token}x.{signature}", f"{token}.{signature[:-2]}AA", token, "x"):
        client.cookies.set(COOKIE, forged)
        assert client.get("/").status_code == 303, forged
        assert client.get("/v1/models").status_code == 401, forged


def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(cp):
    client, csrf = signed_in_client(cp)
    copy = client.cookies[COOKIE]
    assert client.post("/sign-out", data={"csrf_token": "wrong"}).status_code == 403
    out = client.post("/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    replay = anonymous(cp)
    replay.cookies.set(COOKIE, copy)
    assert replay.get("/").status_code == 303
    assert replay.get("/v1/models").status_code == 401


def test_revoking_the_key_ends_its_sessions(cp):
    key = cp.client.post("/v1/api_keys", json={"scope": "admin"}).raise_for_status().json()
    client, _ = signed_in_client(cp, key["key"])
    assert client.get("/v1/models").status_code == 200
    cp.client.delete(f"/v1/api_keys/{key['prefix']}").raise_for_status()
    assert client.get("/v1/models").status_code == 401
    assert client.get("/").status_code == 303


def test_the_models_page_lists_and_searches_models_by_name(cp):
    with Store.open(cp.data_dir) as store:  # the plane's own database: models without a push
        for name in ("dash-alpha", "dash-beta"):
            store.models.create(name)
    client, _ = signed_in_client(cp)
    page = client.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
    assert 'data-model="dash-alpha"' in page.text and 'data-model="dash-beta"' in page.text
    found = client.get("/", params={"q": "ALPHA"})
    assert 'data-model="dash-alpha"' in found.text and 'data-model="dash-beta"' not in found.text
    assert "<html" in found.text  # without JS: the whole page
    fragment = client.get("/", params={"q": "beta"}, headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="models">') and 'data-model="dash-beta"' in fragment.text
    none = client.get("/", params={"q": "<script>"})
    assert "No model's name contains “&lt;script&gt;”" in none.text and "<script>" not in none.text.split("<main>")[1]


def test_static_files_are_served_without_a_session_and_vendored_ones_cached_long(cp):
    client = anonymous(cp)
    htmx = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and "immutable" in htmx.headers["cache-control"]
    assert htmx.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/dashboard.css").headers["cache-control"] == "no-cache"
    assert client.get("/static/../sessions.py").status_code == 404
    assert client.get("/static/vendor/../../sessions.py").status_code == 404


def test_signing_in_again_replaces_the_browsers_session(cp):
    client, _ = signed_in_client(cp)
    first = client.cookies[COOKIE]
    token = "t"
    client.cookies.set("truss_sign_in", token, path="/sign-in")
    again = client.post("/sign-in", data={"api_key": cp.admin_key, "sign_in_token": token, "next": "/"})
    assert again.status_code == 303 and client.cookies[COOKIE] != first
    stale = anonymous(cp)
    stale.cookies.set(COOKIE, first)
    assert stale.get("/v1/models").status_code == 401
    assert client.get("/v1/models").status_code == 200


def test_the_models_page_pages_by_fifty_and_the_search_spans_every_page(cp):
    with Store.open(cp.data_dir) as store:
        for i in range(120):
            store.models.create(f"pg-{i:03d}")
    client, _ = signed_in_client(cp)

    def shown(answer: httpx.Response) -> list[str]:
        return re.findall(r'<tr data-model="([^"]+)"', answer.text)

    first = client.get("/", params={"q": "pg-"})
    assert first.status_code == 200
    assert shown(first) == [f"pg-{i:03d}" for i in range(50)]
    assert "120 models whose name contains “pg-”" in first.text and "page 1 of 3" in first.text
    assert 'href="/?q=pg-&amp;page=2" rel="next"' in first.text and 'rel="prev"' not in first.text
    last = client.get("/", params={"q": "pg-", "page": "3"})
    assert shown(last) == [f"pg-{i:03d}" for i in range(100, 120)]
    assert 'href="/?q=pg-&amp;page=2" rel="prev"' in last.text and 'rel="next"' not in last.text
    # The search looks at every model, not the page shown: pg-11x are on page 3 unsearched.
    narrowed = client.get("/", params={"q": "PG-11"})
    assert shown(narrowed) == [f"pg-{i:03d}" for i in range(110, 120)] and 'class="pager"' not in narrowed.text
    assert "10 models whose name contains “PG-11”" in narrowed.text
    everything = client.get("/")
    total = int(re.search(r"(\d+) models", everything.text).group(1))
    assert total >= 120 and len(shown(everything)) == 50
    fragment = client.get("/", params={"q": "pg-", "page": "2"}, headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<div id="models">') and shown(fragment)[0] == "pg-050"
    # A page that is not there says which are.
    for asked in ("4", "0", "two", "²"):
        missing = client.get("/", params={"q": "pg-", "page": asked})
        assert missing.status_code == 404 and shown(missing) == []
        assert f"No page “{asked}”: 120 models make 3 pages of 50" in missing.text
        assert 'href="/?q=pg-&amp;page=3" rel="last"' in missing.text
