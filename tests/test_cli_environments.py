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


def test_push_into_a_rolling_or_canary_environment_says_what_began_and_environments_show_it(remote: Remote) -> None:
    first = remote.push("rollpush")
    directory = str(remote.home / "models" / "rollpush")
    # An instant environment: once ACTIVE the deployment serves it, and push says so.
    remote.ok("environments", "create", "qa", "--model", "rollpush")
    # truss predict --environment: an empty one says so and how to fill it; an unknown one lists those there are.
    empty = failed(remote, "predict", "--model", "rollpush", "--environment", "qa", "-d", '{"name": "qa"}')
    assert "environment qa of model rollpush has no deployment yet" in empty and "truss push --environment qa" in empty
    unknown = failed(remote, "predict", "--model", "rollpush", "--environment", "nope", "-d", "{}")
    assert "no environment 'nope'" in unknown and "production, qa" in unknown
    assert "cannot be used together" in failed(remote, "predict", "--model", "rollpush", "--environment", "qa",
                                                "--deployment", "deployment-1", "-d", "{}", code=2)
    done = remote.ok("push", directory, "--model-name", "rollpush", "--environment", "qa", "--wait").stdout
    assert "deployment-2 (version 0.2.0) is ACTIVE and serves qa" in done and "truss rollout" not in done
    # Its callers use the environment's URL (it follows later promotions), not the deployment's own.
    assert f"Predict URL: {remote.cp.url}/model-{first['model_id']}/environments/qa/predict\n" in done, done
    assert "Try: truss predict --model rollpush --environment qa -d" in done
    assert remote.ok("predict", "--model", "rollpush", "--environment", "qa", "-d", '{"name": "qa"}').stdout == (
        '{"greeting": "Hello, qa!"}\n')
    assert remote.ok("predict", "--model", "rollpush", "--environment", "production", "-d", "{}").stdout == (
        '{"greeting": "Hello, world!"}\n')

    # Rolling production (one-hour waits): push --promote --wait says a rolling promotion began and how to follow it.
    remote.ok("environments", "update", "production", "--model", "rollpush", "--promotion-settings",
              '{"rolling_deploy": true, "rolling_deploy_config": {"stabilization_time_seconds": 3600}}')
    done = remote.ok("push", directory, "--model-name", "rollpush", "--promote", "--wait").stdout
    assert "deployment-3 (version 0.3.0) is ACTIVE; a rolling promotion into production began (" in done, done
    assert "Follow it with: truss rollout status --watch --model rollpush --environment production" in done
    assert "Try: truss predict --model rollpush --deployment deployment-3" in done  # not production yet

    # environments list / show: the promotion under way, readably (one replica: one step moves it all).
    eventually(lambda: "RAMPING_UP" in remote.ok("environments", "show", "production", "--model", "rollpush").stdout)
    shown = remote.ok("environments", "show", "production", "--model", "rollpush", COLUMNS="200").stdout
    assert "RAMPING_UP rolling: 100% to deployment-3 (candidate), 0% to deployment-1 (previous)" in shown
    assert "truss rollout status --watch --model rollpush --environment production" in shown
    listed = remote.ok("environments", "list", "--model", "rollpush", COLUMNS="200").stdout
    assert "RAMPING_UP rolling: 100% to deployment-3 (candidate), 0% to deployment-1 (previous)" in listed
    assert remote.ok("rollout", "force-cancel", "--model", "rollpush").stdout.startswith("CANCELED")
    assert "(candidate)" not in remote.ok("environments", "list", "--model", "rollpush", COLUMNS="200").stdout

    # Canary production: the deprecation notice; -o json keeps its fields and adds what began.
    remote.ok("environments", "update", "production", "--model", "rollpush", "--promotion-settings",
              '{"rolling_deploy": false, "ramp_up_while_promoting": true}')
    done = remote.truss("push", directory, "--model-name", "rollpush", "--promote", "--wait", "-o", "json")
    assert done.exit_code == 0, done.output
    assert "canary promotions are deprecated: use rolling deployments" in done.stderr
    answer = json.loads(done.stdout)
    assert {"model", "deployment", "tree_hash", "uploaded_files", "uploaded_bytes", "predict_url"} <= set(answer)
    assert answer["environment"] == "production" and answer["deployment"]["name"] == "deployment-4"
    assert answer["promotion"]["kind"] == "canary" and answer["promotion"]["candidate_deployment"]["name"] == "deployment-4"
    assert remote.ok("rollout", "force-cancel", "--model", "rollpush").stdout.startswith("CANCELED")
    assert remote.json("environments", "show", "production", "--model", "rollpush")["current_deployment"]["id"] == first["id"]

    # Instant again: the answer names its own promotion, over at once (not the canceled one
    # before it), and is production's.
    remote.ok("environments", "update", "production", "--model", "rollpush", "--promotion-settings",
              '{"ramp_up_while_promoting": false}')
    answer = remote.json("push", directory, "--model-name", "rollpush", "--promote", "--wait")
    assert (answer["promotion"]["kind"], answer["promotion"]["status"]) == ("instant", "SUCCEEDED"), answer
    assert answer["promotion"]["candidate_deployment"]["id"] == answer["deployment"]["id"]
    assert answer["environment"] == "production"
    assert answer["deployment"]["is_production"] is True
    assert answer["predict_url"].endswith(f"/model-{first['model_id']}/production/predict")
    assert answer["environment_predict_url"] == answer["predict_url"]  # production's own path
