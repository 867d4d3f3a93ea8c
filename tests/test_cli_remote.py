"""`truss remote add | list | use | remove` as a user runs them (HOME is a temporary directory)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from truss_cli.cli.app import app

runner = CliRunner()
KEY = "tc_secretsecretsecret"


def truss(home: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"HOME": str(home), "COLUMNS": "200"}, input=input)


def test_add_list_use_remove(tmp_path: Path) -> None:
    added = truss(tmp_path, "remote", "add", "home", "http://127.0.0.1:8800/", "--api-key", KEY)
    assert added.exit_code == 0, added.output
    assert "Added remote home (http://127.0.0.1:8800) (in use)" in added.stdout  # the first one is in use
    assert truss(tmp_path, "remote", "add", "lab", "https://lab.example.com", "--api-key", "tc_otherotherother").exit_code == 0
    listed = truss(tmp_path, "remote", "list")
    assert listed.exit_code == 0
    assert KEY not in listed.output and "secret" not in listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("* home") and "tc_secr…" in lines[0]
    assert lines[1].startswith("  lab ") and "https://lab.example.com" in lines[1]
    assert truss(tmp_path, "remote", "use", "lab").exit_code == 0
    data = json.loads(truss(tmp_path, "remote", "list", "--output", "json").stdout)
    assert data["in_use"] == "lab"
    assert [(row["name"], row["in_use"]) for row in data["remotes"]] == [("home", False), ("lab", True)]
    removed = truss(tmp_path, "remote", "remove", "lab", "-o", "json")
    assert json.loads(removed.stdout)["name"] == "lab"
    assert [row["name"] for row in json.loads(truss(tmp_path, "remote", "list", "-o", "json").stdout)["remotes"]] == ["home"]
    assert stat.S_IMODE((tmp_path / ".trussrc").stat().st_mode) == 0o600


def test_the_api_key_is_asked_for_when_not_given(tmp_path: Path) -> None:
    result = truss(tmp_path, "remote", "add", "home", "http://127.0.0.1:8800", input=KEY + "\n")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output  # not echoed
    assert f"api_key = {KEY}" in (tmp_path / ".trussrc").read_text()


def test_mistakes_are_named_and_change_nothing(tmp_path: Path) -> None:
    bad_url = truss(tmp_path, "remote", "add", "home", "localhost:8800", "--api-key", KEY)
    assert bad_url.exit_code == 2
    assert "remote URL 'localhost:8800': expected an http(s) URL" in bad_url.output
    assert not (tmp_path / ".trussrc").exists()
    truss(tmp_path, "remote", "add", "home", "http://127.0.0.1:8800", "--api-key", KEY)
    unknown = truss(tmp_path, "remote", "use", "nope")
    assert unknown.exit_code == 2 and "no remote named 'nope' (configured: home)" in unknown.output
    again = truss(tmp_path, "remote", "add", "home", "http://127.0.0.1:9", "--api-key", KEY)
    assert again.exit_code == 2 and "exists already" in again.output and "--replace" in again.output
    assert "http://127.0.0.1:8800" in (tmp_path / ".trussrc").read_text()


def test_a_world_readable_file_is_fixed_with_a_warning(tmp_path: Path) -> None:
    rc = tmp_path / ".trussrc"
    rc.write_text("[baseten]\nremote_provider = baseten\napi_key = bt_0123456789ab\nremote_url = https://app.baseten.co\n")
    rc.chmod(0o644)
    result = truss(tmp_path, "remote", "list")
    assert result.exit_code == 0
    assert "Warning:" in result.stderr and "now 0600" in result.stderr
    assert "baseten  https://app.baseten.co  baseten" in result.stdout
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600


def test_an_empty_list_says_how_to_add_one(tmp_path: Path) -> None:
    result = truss(tmp_path, "remote", "list")
    assert result.exit_code == 0 and "truss remote add NAME URL --api-key KEY" in result.stdout
