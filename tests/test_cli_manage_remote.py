"""Managing models and deployments from the CLI, against a real control plane (one for this
module: a subprocess with the process runtime, real replicas), as a user types the commands.

Each test works on a model of its own, so the tests do not depend on each other's order.
Standard input is never a terminal here (CliRunner), which is what scripts and CI see.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, REPO_ROOT, write_model_dir
from tests.controlplane_support import ControlPlaneProcess, running_controlplane
from truss_cli.cli.app import app
from truss_cli.client.remotes import add_remote, trussrc_path

runner = CliRunner()


@dataclass
class Remote:
    cp: ControlPlaneProcess
    home: Path

    def truss(self, *args: str, input: str | None = None, **env: str) -> Any:
        environment = {"HOME": str(self.home), "COLUMNS": "80", "TRUSS_CACHE_DIR": str(self.home / "cache"), **env}
        return runner.invoke(app, list(args), env=environment, input=input)

    def ok(self, *args: str, **env: str) -> Any:
        done = self.truss(*args, **env)
        assert done.exit_code == 0, f"truss {' '.join(args)}: {done.output}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json").stdout)

    def push(self, model: str, *options: str) -> dict[str, Any]:
        """`truss push` of the hello example as model `model`, waiting until ACTIVE."""
        directory = self.home / "models" / model
        if not directory.exists():
            shutil.copytree(EXAMPLES / "hello", directory)
        return self.json("push", str(directory), "--model-name", model, "--wait", *options)["deployment"]

    def deployments(self, model: str) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.json("deployments", "list", "--model", model)["deployments"]}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("manage")
    with running_controlplane(base / "cp") as cp:
        home = base / "home"
        home.mkdir()
        add_remote(trussrc_path(home), "local", cp.url, cp.admin_key, use=True)
        yield Remote(cp, home)


def eventually(check: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll `check` until it returns something true (the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"still not true after {timeout} s"
        time.sleep(0.5)
    return result


def usage_rows(remote: Remote, model: str) -> dict[str, dict[str, Any]]:
    return {row["deployment_name"]: row for row in remote.json("usage", "--model", model)["usage"]}


def assert_fits_80_columns(text: str) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert too_wide == [], "\n".join(too_wide)


def test_versions_go_up_by_minor_unless_told_and_push_says_which(remote: Remote) -> None:
    assert remote.push("versions")["version"] == "0.1.0"
    assert remote.push("versions")["version"] == "0.2.0"
    major = remote.truss("push", str(remote.home / "models" / "versions"), "--model-name", "versions", "--wait", "--version-bump", "MAJOR")
    assert major.exit_code == 0, major.output
    assert "deployment-3 (version 1.0.0)" in major.stdout
    # Not production (the first push is): the hint calls this deployment, not production.
    assert "Try: truss predict --model versions --deployment deployment-3 -d" in major.stdout
    assert remote.push("versions", "--version-bump", "patch")["version"] == "1.0.1"  # any case


def test_listings_fit_80_columns_and_json_parses(remote: Remote) -> None:
    remote.push("a-model-with-a-rather-long-name-to-fold")
    second = remote.push("a-model-with-a-rather-long-name-to-fold", "--deployment-name", "candidate-from-a-long-ci-pipeline-run")
    models = remote.ok("models", "list")
    assert_fits_80_columns(models.stdout)
    assert models.stdout.split()[:5] == ["NAME", "ID", "PRODUCTION", "DEPLOYMENTS", "STATUS"]
    listed = remote.ok("deployments", "list", "--model", "a-model-with-a-rather-long-name-to-fold")
    assert_fits_80_columns(listed.stdout)
    assert second["id"] in listed.stdout and "★ production" in listed.stdout and "0.2.0" in listed.stdout
    assert "Active" in listed.stdout
    by_name = remote.deployments("a-model-with-a-rather-long-name-to-fold")
    assert by_name["deployment-1"]["is_production"] and by_name["deployment-1"]["version"] == "0.1.0"
    assert by_name["candidate-from-a-long-ci-pipeline-run"]["status_label"] == "Active"
    assert any(m["name"] == "a-model-with-a-rather-long-name-to-fold" for m in remote.json("models", "list")["models"])


def test_rename_and_a_taken_name_is_refused(remote: Remote) -> None:
    remote.push("renames")
    remote.push("renames")
    renamed = remote.ok("deployments", "rename", "--model", "renames", "deployment-2", "canary")
    assert "to canary (" in renamed.stdout
    assert set(remote.deployments("renames")) == {"deployment-1", "canary"}
    taken = remote.truss("deployments", "rename", "--model", "renames", "canary", "deployment-1")
    assert taken.exit_code == 1
    assert "deployment-1" in taken.stderr
    unknown = remote.truss("deployments", "rename", "--model", "renames", "nope", "x")
    assert unknown.exit_code == 1 and unknown.stderr.count("canary") == 1  # what exists, said once


def test_deactivating_production_is_refused_without_yes_and_a_terminal(remote: Remote) -> None:
    production = remote.push("guarded")
    refused = remote.truss("deployments", "deactivate", "--model", "guarded", "production")
    assert refused.exit_code == 1
    assert "production traffic of model guarded will get 404" in refused.stderr
    assert "pass --yes" in refused.stderr
    assert remote.deployments("guarded")["deployment-1"]["status"] == "ACTIVE"
    done = remote.ok("deployments", "deactivate", "--model", "guarded", "production", "--yes", "--wait")
    assert "is INACTIVE" in done.stdout
    predict = remote.truss("predict", "--model", "guarded", "-d", '{"name": "x"}')
    assert predict.exit_code == 1 and "inactive" in predict.stderr
    assert "truss deployments activate" in predict.stderr
    remote.ok("deployments", "activate", "--model", "guarded", production["id"], "--wait")
    again = remote.ok("predict", "--model", "guarded", "-d", '{"name": "x"}')
    assert json.loads(again.stdout) == {"greeting": "Hello, x!"}


def test_delete_asks_first_and_refuses_without_a_terminal(remote: Remote) -> None:
    remote.push("deletions")
    remote.push("deletions")
    refused = remote.truss("deployments", "delete", "--model", "deletions", "deployment-2")
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    assert "deployment-2" in remote.deployments("deletions")
    production = remote.truss("deployments", "delete", "--model", "deletions", "production", "--yes")
    assert production.exit_code == 1 and "truss deployments promote" in production.stderr
    remote.ok("deployments", "delete", "--model", "deletions", "deployment-2", "--yes")
    assert set(remote.deployments("deletions")) == {"deployment-1"}
    model_refused = remote.truss("models", "delete", "deletions")
    assert model_refused.exit_code == 1 and "pass --yes" in model_refused.stderr
    remote.ok("models", "delete", "deletions", "--yes")
    assert "deletions" not in [m["name"] for m in remote.json("models", "list")["models"]]


def test_on_a_terminal_delete_asks_and_a_yes_deletes(remote: Remote) -> None:
    remote.push("asked")
    second = remote.push("asked")
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"y\n")  # typed ahead: read when the question is asked
        env = {**os.environ, "HOME": str(remote.home), "COLUMNS": "80", "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run([sys.executable, "-m", "truss_cli", "deployments", "delete", "--model", "asked", "deployment-2"],
                              stdin=follower, capture_output=True, text=True, env=env, timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stderr
    assert f"Delete deployment deployment-2 ({second['id']}) of model asked? This cannot be undone. [y/N]" in done.stderr
    assert set(remote.deployments("asked")) == {"deployment-1"}


def test_prune_lists_what_it_deletes_and_keeps_the_newest(remote: Remote) -> None:
    for _ in range(4):
        remote.push("pruned")
    refused = remote.truss("deployments", "prune", "--model", "pruned", "--keep", "1")
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    assert "deployment-2" in refused.stderr and "deployment-3" in refused.stderr  # listed before refusing
    assert len(remote.deployments("pruned")) == 4
    done = remote.ok("deployments", "prune", "--model", "pruned", "--keep", "1", "--yes")
    assert "Deleted 2 deployments" in done.stdout and "deployment-2" in done.stdout and "deployment-3" in done.stdout
    assert set(remote.deployments("pruned")) == {"deployment-1", "deployment-4"}  # production and the newest
    nothing = remote.ok("deployments", "prune", "--model", "pruned", "--keep", "1")
    assert "Nothing to prune" in nothing.stdout


def test_promote_moves_production_and_says_what_became_of_the_old_one(remote: Remote) -> None:
    remote.push("promoted")
    remote.push("promoted")
    done = remote.ok("deployments", "promote", "--model", "promoted", "deployment-2")
    assert "now serves production" in done.stdout and "deployment-1 scales to zero" in done.stdout
    listed = remote.deployments("promoted")
    assert listed["deployment-2"]["is_production"] and not listed["deployment-1"]["is_production"]
    kept = remote.ok("deployments", "promote", "--model", "promoted", "deployment-1", "--keep-previous")
    assert "deployment-2 keeps running" in kept.stdout


def test_models_show_prints_the_code_to_call_it_with_the_real_url(remote: Remote) -> None:
    deployment = remote.push("shown")
    remote.ok("models", "describe", "shown", "Greets people")
    shown = remote.ok("models", "show", "shown")
    url = f"{remote.cp.url}/model-{deployment['model_id']}/production/predict"
    assert "Greets people" in shown.stdout
    assert "Custom" in shown.stdout  # type and framework without model_metadata
    assert f"curl -X POST {url}" in shown.stdout
    assert "TRUSS_API_KEY" in shown.stdout and "import" in shown.stdout  # the Python snippet
    assert f"/deployment/{deployment['id']}/predict" in shown.stdout
    data = remote.json("models", "show", "shown")
    assert data["description"] == "Greets people" and data["invocation"]["production"]["url"] == url


def test_models_show_prints_each_environment_url_and_the_deployment_serving_it(remote: Remote) -> None:
    first = remote.push("envshown")
    remote.ok("environments", "create", "staging", "--model", "envshown")
    remote.ok("environments", "create", "qa", "--model", "envshown")
    second = remote.push("envshown", "--environment", "staging")
    base = f"{remote.cp.url}/model-{first['model_id']}"

    def environments() -> dict[str, Any]:
        invocation = remote.json("models", "show", "envshown")["invocation"]
        return {"production": invocation["production"], **{e["name"]: e for e in invocation["environments"]}}

    shown = eventually(lambda: (found := environments())["staging"]["deployment"] and found)
    assert {name: (e["url"], e["deployment"]) for name, e in shown.items()} == {
        "production": (f"{base}/production/predict", {"id": first["id"], "name": "deployment-1"}),
        "staging": (f"{base}/environments/staging/predict", {"id": second["id"], "name": "deployment-2"}),
        "qa": (f"{base}/environments/qa/predict", None),
    }
    lines = remote.ok("models", "show", "envshown").stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("Environments")))
    assert lines[at + 1:at + 7] == [
        f"production  deployment-1 ({first['id']})", f"  {base}/production/predict",
        "qa  no deployment yet (truss push --environment qa)", f"  {base}/environments/qa/predict",
        f"staging  deployment-2 ({second['id']})", f"  {base}/environments/staging/predict",
    ]


def test_readme_starts_from_the_pushed_directory_and_is_set_or_edited(remote: Remote, tmp_path: Path) -> None:
    remote.push("documented")
    assert remote.ok("models", "readme", "documented").stdout.startswith("# hello")
    new = tmp_path / "NEW.md"
    new.write_text("# Documented\n\nIt greets.\n")
    remote.ok("models", "readme", "documented", "--set", str(new))
    assert remote.json("models", "readme", "documented")["readme"] == "# Documented\n\nIt greets.\n"
    appender = tmp_path / "append-editor"
    appender.write_text('#!/bin/sh\nprintf "Edited in an editor.\\n" >> "$1"\n')
    appender.chmod(appender.stat().st_mode | stat.S_IXUSR)
    edited = remote.ok("models", "readme", "documented", "--edit", EDITOR=str(appender), VISUAL="")
    assert "saved" in edited.stdout
    assert remote.json("models", "readme", "documented")["readme"].endswith("It greets.\nEdited in an editor.\n")
    unchanged = remote.ok("models", "readme", "documented", "--edit", VISUAL="true")  # `true` changes nothing
    assert "unchanged" in unchanged.stdout
    no_editor = remote.truss("models", "readme", "documented", "--edit", VISUAL="", EDITOR="")
    assert no_editor.exit_code == 2 and "$EDITOR" in no_editor.stderr


def test_usage_lists_deployments_with_deleted_ones_marked(remote: Remote) -> None:
    remote.push("metered")
    second = remote.push("metered")
    remote.ok("predict", "--model", "metered", "-d", '{"name": "x"}')
    remote.ok("deployments", "delete", "--model", "metered", second["id"], "--yes")
    # The control plane counts requests as they pass and records them every few seconds.
    rows = eventually(lambda: (found := usage_rows(remote, "metered")).get("deployment-1", {}).get("requests") and found)
    assert rows["deployment-1"]["requests"] == 1 and not rows["deployment-1"]["deleted"]
    assert rows["deployment-2"]["deleted"]
    table = remote.ok("usage", "--model", "metered")
    assert_fits_80_columns(table.stdout)
    assert table.stdout.split()[:5] == ["MODEL", "DEPLOYMENT", "ID", "REPLICA", "TIME"]
    assert "deployment-2 (deleted)" in table.stdout
    assert "total" in table.stdout
    assert remote.json("usage", "--model", "metered", "--since", "1h")["since"]
    bad = remote.truss("usage", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since 'yesterday'" in bad.stderr


def test_predict_by_name_with_an_invoke_key(remote: Remote) -> None:
    remote.push("invoked")
    second = remote.push("invoked")
    key = remote.json("api-keys", "create", "--scope", "invoke", "--model", "invoked")["key"]
    remote.ok("remote", "add", "invoker", remote.cp.url, "--api-key", key)
    answer = remote.ok("predict", "--model", "invoked", "--remote", "invoker", "-d", '{"name": "key"}')
    assert json.loads(answer.stdout) == {"greeting": "Hello, key!"}
    # The key may not read deployments: the model's name is resolved, the deployment id used as given.
    one = remote.ok("predict", "--model", "invoked", "--deployment", second["id"], "--remote", "invoker", "-d", '{"name": "two"}')
    assert json.loads(one.stdout) == {"greeting": "Hello, two!"}
    refused = remote.truss("deployments", "list", "--model", "invoked", "--remote", "invoker")
    assert refused.exit_code == 1 and "admin key" in refused.stderr


def test_push_tail_streams_the_build_then_the_replica_log(remote: Remote) -> None:
    directory = remote.home / "models" / "tailed"
    shutil.copytree(EXAMPLES / "hello", directory)
    done = remote.ok("push", str(directory), "--tail")
    assert "[build] " in done.stderr
    assert "[replica:" in done.stderr and "Model loaded" in done.stderr
    assert done.stderr.index("[build] ") < done.stderr.index("[replica:")
    assert "is ACTIVE" in done.stdout


FAILING_LOAD = """
class Model:
    def load(self):
        raise RuntimeError("the weights are missing")

    def predict(self, request):
        return request
"""


def test_push_tail_of_a_model_that_fails_to_load_ends_with_the_cause(remote: Remote) -> None:
    directory = write_model_dir(remote.home / "models" / "broken-tail", FAILING_LOAD, "model_name: broken-tail\n")
    done = remote.truss("push", str(directory), "--tail")
    assert done.exit_code == 1, done.output
    assert "DEPLOY_FAILED" in done.stderr and "weights are missing" in done.stderr
    assert "[build] " in done.stderr and "[replica:" in done.stderr  # the replica's own lines, not only the cause


def test_a_failed_build_is_listed_with_its_cause_and_retry_builds_it_again(remote: Remote) -> None:
    directory = write_model_dir(
        remote.home / "models" / "unbuildable", FAILING_LOAD,
        "model_name: unbuildable\nrequirements:\n  - this-package-does-not-exist-truss-cli==1.0\n",
    )
    pushed = remote.truss("push", str(directory), "--wait")
    assert pushed.exit_code == 1 and "BUILD_FAILED" in pushed.stderr
    listed = remote.ok("deployments", "list", "--model", "unbuildable")
    assert_fits_80_columns(listed.stdout)
    assert "Deployment" in listed.stdout and "BUILD_FAILED" in listed.stdout
    assert "deployment-1: " in listed.stdout and "this-package-does-not-exist-truss-cli" in listed.stdout  # the cause
    retried = remote.truss("deployments", "retry", "--model", "unbuildable", "deployment-1", "--wait")
    assert retried.exit_code == 1 and "BUILD_FAILED" in retried.stderr  # built again, failed again
    log = remote.ok("logs", "--model", "unbuildable", "--deployment", "deployment-1", "--kind", "build").stdout
    assert "retrying" in log
    # Production serves nothing (its first deployment failed): `truss logs` without
    # --deployment shows the failed one's log, saying which it shows.
    shown = remote.ok("logs", "--model", "unbuildable", "--kind", "build")
    assert "retrying" in shown.stdout and "this-package-does-not-exist-truss-cli" in shown.stdout
    assert "production serves nothing yet; showing deployment deployment-1 (BUILD_FAILED)" in shown.stderr
