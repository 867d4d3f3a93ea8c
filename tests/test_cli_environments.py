"""`truss environments ...`, `truss push --environment` and `truss deployments promote
--environment` against a real control plane (a subprocess, process runtime, real replicas),
as a user types them: tables, JSON output, and the errors that say what exists and how to fix it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.controlplane_support import running_controlplane
from tests.test_cli_manage_remote import Remote, eventually
from truss_cli.client.remotes import add_remote, trussrc_path


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("environments")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        yield Remote(cp, home)


def failed(remote: Remote, *args: str, code: int = 1) -> str:
    """What the command said on stderr; 1 for a refusal, 2 for a usage error."""
    done = remote.truss(*args)
    assert done.exit_code == code, done.output
    return done.stderr


def test_environments_from_the_cli(remote: Remote) -> None:
    first = remote.push("envcli")
    listed = remote.ok("environments", "list", "--model", "envcli").stdout
    assert "production" in listed and first["name"] in listed and "instant" in listed

    created = remote.ok("environments", "create", "staging", "--model", "envcli", "--cleanup-strategy", "KEEP",
                        "--autoscaling-settings", '{"max_replica": 2}').stdout
    assert "Environment staging of model envcli created" in created and "truss push --environment staging" in created
    shown = remote.json("environments", "show", "staging", "--model", "envcli")
    assert shown["current_deployment"] is None and shown["autoscaling_settings"]["max_replica"] == 2
    assert shown["promotion_settings"]["promotion_cleanup_strategy"] == "KEEP"
    assert "none yet" in remote.ok("environments", "show", "staging", "--model", "envcli").stdout

    # Errors say what exists and how to fix it.
    assert "production, staging" in failed(remote, "environments", "show", "stagin", "--model", "envcli")
    assert "cannot be created twice" in failed(remote, "environments", "create", "production", "--model", "envcli")
    assert "production cannot be deleted" in failed(remote, "environments", "delete", "production", "--model", "envcli", "--yes")
    assert "max_replica" in failed(remote, "environments", "update", "staging", "--model", "envcli",
                                   "--autoscaling-settings", '{"min_replica": 5}')
    assert "not JSON" in failed(remote, "environments", "update", "staging", "--model", "envcli",
                                "--promotion-settings", "{rolling", code=2)
    assert "nothing to update" in failed(remote, "environments", "update", "staging", "--model", "envcli", code=2)
    assert "unchanged" in remote.ok("environments", "update", "staging", "--model", "envcli",
                                    "--cleanup-strategy", "keep").stdout
    assert "updated" in remote.ok("environments", "update", "staging", "--model", "envcli",
                                  "--promotion-settings", '{"rolling_deploy": true}').stdout

    # push --environment: it serves staging once ACTIVE, production keeps the first.
    second = remote.push("envcli", "--environment", "staging")
    eventually(lambda: (remote.json("environments", "show", "staging", "--model", "envcli")["current_deployment"]
                        or {}).get("id") == second["id"])
    model_id = second["model_id"]
    answer = httpx.post(f"{remote.cp.url}/model-{model_id}/environments/staging/predict", json={"text": "hi"},
                        headers={"Authorization": f"Api-Key {remote.cp.admin_key}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    table = remote.ok("environments", "list", "--model", "envcli").stdout
    assert second["name"] in table and "rolling" in table
    directory = str(remote.home / "models" / "envcli")
    assert "no environment 'qa'" in failed(remote, "push", directory, "--model-name", "envcli", "--environment", "qa")
    assert "only means something with --promote or --environment" in failed(
        remote, "push", directory, "--preserve-previous-production-deployment", code=2)
    assert "--environment" in failed(remote, "push", directory, "--watch", "--environment", "staging", code=2)

    # promote --environment production takes it out of staging; staging's KEEP is not production's rule.
    done = remote.ok("deployments", "promote", "--model", "envcli", second["name"], "--environment", "production").stdout
    assert f"now serves production of model envcli; the previous deployment {first['name']} scales to zero" in done
    assert remote.json("environments", "show", "staging", "--model", "envcli")["current_deployment"] is None

    deleted = remote.ok("environments", "delete", "staging", "--model", "envcli", "--yes").stdout
    assert "Environment staging of model envcli deleted" in deleted
    assert json.loads(remote.ok("environments", "list", "--model", "envcli", "-o", "json").stdout)["environments"][0]["name"] == "production"
