"""Patch points end to end (issue 10): a real control plane process, real development
replicas (process runtime, `python -m truss_cli.server.control`), real HTTP through the
gateway. Envelopes are built the way the watcher builds them: real file edits, an
`IncrementalTree`, `sync.patch.Patch.between` and `sync.envelope`.

A code change is served; a hot swap keeps what load() set; a syntax error answers 422 with
the traceback while the old code serves, and a fixed file recovers; a stale base answers 409
with the state; a path outside the tree is refused with nothing stored; a client predicting
in a loop through 20 syncs sees no failure; promoting development builds from the patched
code; a patch while scaled to zero is served after the wake; after a kill -9 of the control
plane the next one patches the replica that ran on; a sync cut short by a kill -9 (the
replica switched, the control plane never heard) is finished by the next control plane; and
with the replica gone too a new one starts at the patched code.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import current_replica_pid, eventually, kill_replica, ok, refused
from controlplane_support import ControlPlaneProcess, running_controlplane, start_controlplane, stop_replicas
from truss_cli.incremental_tree import IncrementalTree
from truss_cli.sync.envelope import envelope_bytes
from truss_cli.sync.manifest import Manifest
from truss_cli.sync.patch import Patch, diff

# load() draws a token: a hot swap keeps the instance (same token), a restart does not.
MODEL = """
import secrets


class Model:
    def load(self):
        self.token = secrets.token_hex(8)

    def predict(self, request):
        return {{"marker": {marker!r}, "token": self.token}}
"""
CONFIG = "model_name: {name}\npython_version: py311\n"


class Watcher:
    """What `truss push --watch` does with a save: update the tree, build the envelope."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = IncrementalTree(root)

    def edit(self, relative: str, text: str, hot_reload: str = "auto") -> tuple[Patch, bytes]:
        (self.root / relative).write_text(text)
        base = self.tree.manifest
        delta = self.tree.update([self.root / relative])
        patch = Patch.between(base, delta, hot_reload)
        blobs = {entry.sha256: self.root / path for path, entry in delta.puts().items()}
        return patch, envelope_bytes(patch.to_dict(), blobs)

    def set_marker(self, marker: str) -> tuple[Patch, bytes]:
        return self.edit("model/model.py", MODEL.format(marker=marker))


def patches_url(deployment: dict[str, Any]) -> str:
    return f"/v1/models/{deployment['model_id']}/deployments/development/patches"


def send(cp: ControlPlaneProcess, deployment: dict[str, Any], envelope: bytes, sync: bool = True) -> httpx.Response:
    return cp.client.post(patches_url(deployment), params={"sync": "true"} if sync else None, content=envelope,
                          headers={"Content-Type": "application/x-tar"}, timeout=300)


def state(cp: ControlPlaneProcess, deployment: dict[str, Any], manifest: bool = False) -> dict[str, Any]:
    return ok(cp.client.get(patches_url(deployment) + "/state", params={"manifest": "1"} if manifest else None))


def predict(client: httpx.Client, model_id: str, target: str = "development") -> dict[str, Any]:
    return ok(client.post(f"/model-{model_id}/{target}/predict", json={}, timeout=120))


def push_development(cp: ControlPlaneProcess, root: Path, name: str) -> dict[str, Any]:
    created = ok(cp.client.post(f"/v1/models/{name}/deployments",
                                json={"tree_hash": cp.upload(root), "development": True}), 201)
    found = cp.wait_for_status(created["model_id"], created["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED", timeout=600)
    assert found["status"] == "ACTIVE", found
    return created


def model_root(tmp_path: Path, name: str) -> Path:
    return write_model_dir(tmp_path / name, MODEL.format(marker="a"), CONFIG.format(name=name))


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("patches") / "cp") as plane:
        yield plane


@pytest.fixture(scope="module")
def dev(cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Watcher]:
    root = model_root(tmp_path_factory.mktemp("live"), "live")
    return push_development(cp, root, "live"), Watcher(root)


def test_a_code_change_is_served_and_a_hot_swap_keeps_what_load_set(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    before = predict(cp.client, deployment["model_id"])
    assert before["marker"] == "a"
    # The pushed tree hashes as the watcher's: its first patch builds on what the remote runs.
    assert state(cp, deployment) == {"running_patch_point": {"hash": watcher.tree.tree_hash()},
                                     "pending_patch_point": None, "rebuild": None}
    patch, envelope = watcher.set_marker("b")
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "hot_swap", answer
    assert answer["tree_hash"] == patch.next_hash == answer["patch_point"]["hash"]
    after = predict(cp.client, deployment["model_id"])
    assert after == {"marker": "b", "token": before["token"]}  # the same instance, new code
    assert state(cp, deployment) == {"running_patch_point": {"hash": patch.next_hash}, "pending_patch_point": None,
                                     "rebuild": None}
    listed = state(cp, deployment, manifest=True)["manifest"]
    assert listed == {path: {"sha256": e.sha256, "mode": e.mode} for path, e in watcher.tree.manifest.items()}


def test_a_syntax_error_answers_422_while_the_old_code_serves_and_a_fixed_file_recovers(
    cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    served = predict(cp.client, deployment["model_id"])["marker"]
    broken, envelope = watcher.edit("model/model.py", MODEL.format(marker="broken") + "\ndef oops(:\n")
    body = refused(send(cp, deployment, envelope), 422, "PATCH_FAILED")
    assert body["detail"]["phase"] == "syntax", body
    assert "model/model.py" in body["detail"]["traceback"], body
    assert predict(cp.client, deployment["model_id"])["marker"] == served
    assert state(cp, deployment)["pending_patch_point"] == {"hash": broken.next_hash}  # the next patch builds on it

    fixed, envelope = watcher.set_marker("fixed")
    assert fixed.prev_patch_hash == broken.next_hash
    assert ok(send(cp, deployment, envelope))["action"] in ("hot_swap", "restart")
    assert predict(cp.client, deployment["model_id"])["marker"] == "fixed"
    assert state(cp, deployment) == {"running_patch_point": {"hash": fixed.next_hash}, "pending_patch_point": None,
                                     "rebuild": None}


def test_a_patch_on_a_stale_base_answers_409_with_the_state_and_a_rediff_recovers(
    cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    running = state(cp, deployment)["running_patch_point"]
    stale_base = watcher.tree.manifest
    staged, envelope = watcher.set_marker("c")
    assert ok(send(cp, deployment, envelope, sync=False), 201)["patch_point"]["hash"] == staged.next_hash

    (watcher.root / "model" / "model.py").write_text(MODEL.format(marker="d"))
    watcher.tree.update([watcher.root / "model" / "model.py"])
    body = refused(send(cp, deployment, envelope_between(stale_base, watcher)[1]), 409, "STALE_PATCH_BASE")
    assert body["detail"] == {"running_patch_point": running, "pending_patch_point": {"hash": staged.next_hash},
                              "rebuild": None}

    # The client's recovery: the remote's manifest, a diff, the patch again.
    remote = Manifest.from_dict({"format": 1, "files": state(cp, deployment, manifest=True)["manifest"]})
    assert remote.tree_hash() == staged.next_hash
    ok(send(cp, deployment, envelope_between(remote, watcher)[1]))
    assert predict(cp.client, deployment["model_id"])["marker"] == "d"


def envelope_between(base: Manifest, watcher: Watcher) -> tuple[Patch, bytes]:
    """The patch from `base` to the watcher's tree now."""
    delta = diff(base, watcher.tree.manifest)
    patch = Patch.between(base, delta)
    return patch, envelope_bytes(patch.to_dict(), {e.sha256: watcher.root / p for p, e in delta.puts().items()})


def test_a_path_outside_the_tree_is_refused_with_nothing_stored(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    before = state(cp, deployment)
    trees_before = sorted((cp.data_dir / "manifests").glob("*.json"))
    base = before["pending_patch_point"] or before["running_patch_point"]
    content = b"print('escaped')\n"
    digest = hashlib.sha256(content).hexdigest()
    document = {"format": 1, "prev_patch_hash": base["hash"], "next_hash": "0" * 64,
                "changes": {"../escaped.py": {"sha256": digest, "mode": 0o100644}}, "hot_reload": "auto"}
    body = refused(send(cp, deployment, envelope_bytes(document, {digest: content})), 400, "BAD_PATCH")
    assert "escaped.py" in body["error"], body
    assert state(cp, deployment) == before
    assert sorted((cp.data_dir / "manifests").glob("*.json")) == trees_before
    assert not list(cp.data_dir.rglob("escaped.py"))


def test_hot_reload_off_restarts_and_load_runs_again(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    before = predict(cp.client, deployment["model_id"])
    _, envelope = watcher.edit("model/model.py", MODEL.format(marker="cold"), hot_reload="off")
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "restart", answer
    after = predict(cp.client, deployment["model_id"])
    assert after["marker"] == "cold" and after["token"] != before["token"]


def test_a_content_neither_sent_nor_stored_is_refused_and_a_stored_one_need_not_be_sent(
    cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    before = state(cp, deployment)
    patch, _ = watcher.edit("notes.txt", "never sent " + watcher.tree.tree_hash())
    body = refused(send(cp, deployment, envelope_bytes(patch.to_dict(), {})), 400, "MISSING_BLOB")
    assert body["detail"] == {"paths": ["notes.txt"]}
    assert state(cp, deployment) == before
    (watcher.root / "notes.txt").unlink()
    watcher.tree.update([watcher.root / "notes.txt"])

    # Back to a content the remote has (a revert): the envelope need not carry it.
    served = predict(cp.client, deployment["model_id"])["marker"]
    old_text = (watcher.root / "model" / "model.py").read_text()
    _, envelope = watcher.set_marker("other")
    ok(send(cp, deployment, envelope))
    revert, _ = watcher.edit("model/model.py", old_text)
    ok(send(cp, deployment, envelope_bytes(revert.to_dict(), {})))
    assert predict(cp.client, deployment["model_id"])["marker"] == served


def test_a_client_predicting_in_a_loop_sees_no_failure_through_20_syncs(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    failures: list[str] = []
    answers = 0
    stop = threading.Event()

    def loop() -> None:
        nonlocal answers
        with httpx.Client(base_url=cp.url, headers={"Authorization": f"Api-Key {cp.admin_key}"}, timeout=60) as client:
            while not stop.is_set():
                response = client.post(f"/model-{deployment['model_id']}/development/predict", json={})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                answers += 1

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for index in range(20):
            # Every other save also changes load(): restarts and hot swaps both.
            text = MODEL.format(marker=f"loop-{index}")
            if index % 2:
                text = text.replace("token_hex(8)", "token_hex(9)")
            _, envelope = watcher.edit("model/model.py", text)
            ok(send(cp, deployment, envelope))
            assert predict(cp.client, deployment["model_id"])["marker"] == f"loop-{index}"
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert answers > 20


def test_promoting_development_builds_a_published_deployment_from_the_patched_code(
    cp: ControlPlaneProcess, dev: Any
) -> None:
    deployment, watcher = dev
    _, envelope = watcher.set_marker("promoted")
    ok(send(cp, deployment, envelope))
    published = ok(cp.client.post(f"/v1/models/{deployment['model_id']}/deployments/development/promote"), 201)
    assert published["id"] != deployment["id"]
    found = cp.wait_for_status(deployment["model_id"], published["id"], "ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED",
                               timeout=600)
    assert found["status"] == "ACTIVE", found
    deadline = time.monotonic() + 60
    while not ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{published['id']}"))["is_production"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert predict(cp.client, deployment["model_id"], "production")["marker"] == "promoted"


def test_a_change_a_replica_cannot_take_is_synced_by_a_rebuild(cp: ControlPlaneProcess, dev: Any) -> None:
    deployment, watcher = dev
    staged, envelope = watcher.set_marker("rebuilt")
    ok(send(cp, deployment, envelope, sync=False), 201)
    patch, envelope = watcher.edit("config.yaml", CONFIG.format(name="live") + "resources:\n  cpu: 500m\n")
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "rebuild", answer
    assert "resources" in answer["needs_full_deploy_reason"], answer
    deadline = time.monotonic() + 600  # the old replica serves until the rebuilt one does
    while (found := state(cp, deployment))["rebuild"] is not None and found["rebuild"]["phase"] != "failed":
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    assert found == {"running_patch_point": {"hash": patch.next_hash}, "pending_patch_point": None, "rebuild": None}
    assert predict(cp.client, deployment["model_id"])["marker"] == "rebuilt"
    # Patches go on from the rebuilt tree.
    _, envelope = watcher.set_marker("after-rebuild")
    assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
    assert predict(cp.client, deployment["model_id"])["marker"] == "after-rebuild"


def test_a_published_deployment_takes_no_patch(cp: ControlPlaneProcess, dev: Any, tmp_path: Path) -> None:
    deployment, _ = dev
    published = [d for d in ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments"))["deployments"]
                 if not d.get("is_development") and d["name"] != "development"]
    if not published:
        pytest.skip("needs the promoted deployment")
    url = f"/v1/models/{deployment['model_id']}/deployments/{published[0]['id']}/patches/state"
    refused(cp.client.get(url), 409, "NOT_DEVELOPMENT")


def test_a_patch_while_scaled_to_zero_is_served_after_the_wake_and_survives_a_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "cp"
    args = ("--dev-idle-seconds", "2")
    cp = start_controlplane(data_dir, extra_args=args)
    try:
        root = model_root(tmp_path, "sleepy")
        watcher = Watcher(root)
        deployment = push_development(cp, root, "sleepy")
        cp.wait_for_status(deployment["model_id"], deployment["id"], "SCALED_TO_ZERO", timeout=300)
        patch, envelope = watcher.set_marker("while-asleep")
        answer = ok(send(cp, deployment, envelope))
        assert answer["action"] == "deferred", answer
        assert predict(cp.client, deployment["model_id"])["marker"] == "while-asleep"  # the wake starts at it
        deadline = time.monotonic() + 60
        while state(cp, deployment)["pending_patch_point"] is not None:
            assert time.monotonic() < deadline, state(cp, deployment)
            time.sleep(0.1)
        assert state(cp, deployment)["running_patch_point"] == {"hash": patch.next_hash}

        # A kill -9 of the control plane; its replica runs on, and the next control plane
        # patches it (the token file outlived the control plane). From now on it stays awake.
        awake = ("--dev-idle-seconds", "600")
        cp.kill()
        cp.close()
        cp = start_controlplane(data_dir, admin_key=cp.admin_key, extra_args=awake)
        assert first_answer(cp, deployment)["marker"] == "while-asleep"
        patch, envelope = watcher.set_marker("after-kill")
        assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
        assert predict(cp.client, deployment["model_id"])["marker"] == "after-kill"

        # A sync cut short: the replica took the staged tree, the control plane died before
        # it heard. The next one sees the replica at the staged tree: it runs.
        staged, envelope = watcher.set_marker("mid-sync")
        ok(send(cp, deployment, envelope, sync=False), 201)
        cp.kill()
        cp.close()
        send_to_replica_directly(data_dir, deployment["id"], patch.next_hash, staged, watcher.root)
        cp = start_controlplane(data_dir, admin_key=cp.admin_key, extra_args=awake)
        assert first_answer(cp, deployment)["marker"] == "mid-sync"
        deadline = time.monotonic() + 60
        while state(cp, deployment) != {"running_patch_point": {"hash": staged.next_hash}, "pending_patch_point": None,
                                        "rebuild": None}:
            assert time.monotonic() < deadline, state(cp, deployment)
            time.sleep(0.1)

        cp.kill()
        cp.close()
        stop_replicas(data_dir)  # its replica gone too: the next one must start at the patched tree
        cp = start_controlplane(data_dir, admin_key=cp.admin_key, extra_args=awake)
        assert first_answer(cp, deployment)["marker"] == "mid-sync"
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


def first_answer(cp: ControlPlaneProcess, deployment: dict[str, Any]) -> dict[str, Any]:
    """The first 200 of a freshly started control plane (its first tick publishes the routes)."""
    deadline = time.monotonic() + 120
    while True:
        response = cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=120)
        if response.status_code == 200:
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def send_to_replica_directly(data_dir: Path, deployment_id: str, from_hash: str, patch: Patch, root: Path) -> None:
    """What a sync sends the replica (docs/live-reload.md, the replica envelope), sent by
    the test through the control URL and token file of the replica's Handle."""
    from truss_cli.controlplane.store import Store

    with Store.open(data_dir) as store:
        handle = next(r.handle for r in store.replicas.list(deployment_id) if r.phase == "ready")
    token = Path(handle["data"]["control_token_file"]).read_text()
    puts = patch.changes.puts()
    document = {"format": 1, "from_hash": from_hash, "to_hash": patch.next_hash,
                "puts": [{"path": p, "sha256": e.sha256, "mode": e.mode} for p, e in puts.items()],
                "deletes": patch.changes.deletes(), "replica_config": None, "environment": None, "python": None,
                "hot_reload": "auto"}
    response = httpx.post(handle["data"]["control_url"] + "/control/patch", timeout=120,
                          content=envelope_bytes(document, {e.sha256: root / p for p, e in puts.items()}),
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


ENV_MODEL = """
import os


class Model:
    def predict(self, request):
        return {"greeting": os.environ.get("GREETING")}
"""


def test_an_environment_variable_patched_into_config_yaml_survives_the_replicas_loss(cp: ControlPlaneProcess,
                                                                                       tmp_path: Path) -> None:
    root = write_model_dir(tmp_path / "envvar", ENV_MODEL, CONFIG.format(name="envvar") + "environment_variables:\n  GREETING: built\n")
    deployment = push_development(cp, root, "envvar")
    assert predict(cp.client, deployment["model_id"]) == {"greeting": "built"}
    watcher = Watcher(root)
    _, envelope = watcher.edit("config.yaml", (root / "config.yaml").read_text().replace("built", "patched"))
    assert ok(send(cp, deployment, envelope))["action"] == "restart"
    assert predict(cp.client, deployment["model_id"]) == {"greeting": "patched"}

    # A replica started later (here: after its loss) runs with the patched config.yaml, not the build's.
    killed = kill_replica(cp.data_dir, deployment["id"])
    eventually(lambda: (pid := current_replica_pid(cp.data_dir, deployment["id"])) is not None and pid != killed
               and cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/development").json()["status"] == "ACTIVE")
    assert predict(cp.client, deployment["model_id"]) == {"greeting": "patched"}
