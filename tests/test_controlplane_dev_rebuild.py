"""Requirements by patch and the zero-downtime development rebuild (docs/live-reload.md,
contracts C2 and C3), end to end: a real control plane process, process runtime, real
development replicas, envelopes built from real file edits, real installs by uv from PyPI.

A requirement added is installed into a new environment and the new code imports it; removed,
the code that no longer needs it serves; a requirement that does not exist answers 422 phase
`requirements` with the installer's output while the old code serves; a replica killed after
a requirements patch comes back on the new environment. A change the process runtime rebuilds
(`resources`) keeps a client predicting in a loop at zero failures until the rebuilt replica
serves the new code; a rebuild whose build fails (a download that cannot be fetched) leaves the
old code serving with `rebuild.phase: failed`, cleared by the next patch, and so does a
rebuilt replica whose load() raises. A staged patch's
`hot_reload: "off"` is honoured by a sync after a control-plane restart; a rebuild cut short
by a kill -9 of the control plane is started over by the next one, the old code serving, and
leaves no replica process behind but the one serving; a
save during a rebuild is staged on top (`deferred`) and served once the rebuild ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import write_model_dir
from controlplane_checks import (
    current_replica_pid,
    eventually,
    kill_replica,
    process_alive,
    replica_handles,
    sessions_running_under,
)
from controlplane_support import ControlPlaneProcess, running_controlplane, start_controlplane, stop_replicas
from test_controlplane_patches import (
    Watcher,
    first_answer,
    ok,
    patches_url,
    predict,
    push_development,
    refused,
    send,
    state,
)

# predict says which code runs and whether `six` can be imported in the replica's environment.
MODEL = """
class Model:
    def predict(self, request):
        try:
            import six
        except ImportError:
            version = None
        else:
            version = six.__version__
        return {{"marker": {marker!r}, "six": version}}
"""
CONFIG = "model_name: {name}\npython_version: py311\n"
# load() waits for a file the test creates: a rebuilt replica stays "deploying" until then.
GATED = """
import os
import time


class Model:
    def load(self):
        while not os.path.exists({gate!r}):
            time.sleep(0.05)

    def predict(self, request):
        return {{"marker": {marker!r}}}
"""
SIX = "six==1.16.0"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(tmp_path_factory.mktemp("rebuild") / "cp") as plane:
        yield plane


def development(cp: ControlPlaneProcess, tmp_path: Path, name: str) -> tuple[dict[str, Any], Watcher]:
    root = write_model_dir(tmp_path / name, MODEL.format(marker="a"), CONFIG.format(name=name))
    return push_development(cp, root, name), Watcher(root)


def set_marker(watcher: Watcher, marker: str) -> Any:
    return watcher.edit("model/model.py", MODEL.format(marker=marker))


def wait_for_state(cp: ControlPlaneProcess, deployment: dict[str, Any], done: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = state(cp, deployment)
        if done(found):
            return found
        assert time.monotonic() < deadline, found  # only stops a hang
        time.sleep(0.1)


def test_a_requirement_added_is_installed_and_served_and_removed_again(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    deployment, watcher = development(cp, tmp_path, "reqs")
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": None}

    added, envelope = watcher.edit("config.yaml", CONFIG.format(name="reqs") + f"requirements:\n  - {SIX}\n")
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "requirements", answer
    assert answer["requirements"] == {"added": [SIX], "removed": [], "changed": []}, answer
    assert f"+{SIX}" in answer["reason"], answer
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": "1.16.0"}
    assert state(cp, deployment)["running_patch_point"] == {"hash": added.next_hash}

    # Code saves go on as hot swaps on the new environment.
    _, envelope = set_marker(watcher, "b")
    assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
    assert predict(cp.client, deployment["model_id"]) == {"marker": "b", "six": "1.16.0"}

    _, envelope = watcher.edit("config.yaml", CONFIG.format(name="reqs"))
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "requirements", answer
    assert answer["requirements"] == {"added": [], "removed": [SIX], "changed": []}, answer
    assert predict(cp.client, deployment["model_id"]) == {"marker": "b", "six": None}


def test_a_requirement_that_cannot_be_installed_answers_422_while_the_old_code_serves(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    deployment, watcher = development(cp, tmp_path, "badreq")
    missing = "truss-cli-test-no-such-package-anywhere==0.0.1"
    broken, envelope = watcher.edit("config.yaml", CONFIG.format(name="badreq") + f"requirements:\n  - {missing}\n")
    body = refused(send(cp, deployment, envelope), 422, "PATCH_FAILED")
    assert body["detail"]["phase"] == "requirements", body
    assert "truss-cli-test-no-such-package-anywhere" in body["detail"]["traceback"], body
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": None}
    assert state(cp, deployment)["pending_patch_point"] == {"hash": broken.next_hash}  # the next patch builds on it

    fixed, envelope = watcher.edit("config.yaml", CONFIG.format(name="badreq") + f"requirements:\n  - {SIX}\n")
    assert fixed.prev_patch_hash == broken.next_hash
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "requirements", answer
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": "1.16.0"}


def test_a_replica_started_after_a_requirements_patch_runs_on_the_new_environment(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    deployment, watcher = development(cp, tmp_path, "restarted")
    _, envelope = watcher.edit("config.yaml", CONFIG.format(name="restarted") + f"requirements:\n  - {SIX}\n")
    assert ok(send(cp, deployment, envelope))["action"] == "requirements"
    assert predict(cp.client, deployment["model_id"])["six"] == "1.16.0"

    killed = kill_replica(cp.data_dir, deployment["id"])
    deadline = time.monotonic() + 180
    while True:  # the reconciler restarts it (backoff: a second); requests fail or park meanwhile
        response = cp.client.post(f"/model-{deployment['model_id']}/development/predict", json={}, timeout=120)
        if response.status_code == 200 and current_replica_pid(cp.data_dir, deployment["id"]) not in (None, killed):
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": "1.16.0"}


def test_a_rebuild_keeps_the_old_replica_serving_until_the_new_one_serves(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    deployment, watcher = development(cp, tmp_path, "rebuilt")
    old_pid = current_replica_pid(cp.data_dir, deployment["id"])
    failures: list[str] = []
    markers: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=cp.url, headers={"Authorization": f"Api-Key {cp.admin_key}"}, timeout=120) as client:
            while not stop.is_set():
                response = client.post(f"/model-{deployment['model_id']}/development/predict", json={})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    markers.append(response.json()["marker"])

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        staged, envelope = set_marker(watcher, "after-rebuild")
        ok(send(cp, deployment, envelope, sync=False), 201)
        patch, envelope = watcher.edit("config.yaml", CONFIG.format(name="rebuilt") + "resources:\n  cpu: 500m\n")
        answer = ok(send(cp, deployment, envelope))
        assert answer["action"] == "rebuild", answer
        assert "resources" in answer["reason"], answer
        done = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed")
        assert done == {"running_patch_point": {"hash": patch.next_hash}, "pending_patch_point": None,
                        "rebuild": None}, done
        assert predict(cp.client, deployment["model_id"])["marker"] == "after-rebuild"
        count = len(markers)
        deadline = time.monotonic() + 60
        while len(markers) < count + 5:  # the loop's own requests see the new code too
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert markers[0] == "a" and markers[-1] == "after-rebuild"
    found = ok(cp.client.get(f"/v1/models/{deployment['model_id']}/deployments/{deployment['id']}"))
    assert found["status"] == "ACTIVE", found
    deadline = time.monotonic() + 60
    while current_replica_pid(cp.data_dir, deployment["id"]) in (None, old_pid):  # the old one drains, then stops
        assert time.monotonic() < deadline, replica_handles(cp.data_dir, deployment["id"])
        time.sleep(0.1)
    assert not process_alive(old_pid)
    # Patches go on from the rebuilt tree, on the new replica.
    _, envelope = set_marker(watcher, "patched-after")
    assert ok(send(cp, deployment, envelope))["action"] == "hot_swap"
    assert predict(cp.client, deployment["model_id"])["marker"] == "patched-after"


def test_a_rebuild_whose_build_fails_leaves_the_old_code_serving(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    deployment, watcher = development(cp, tmp_path, "failing")
    running = state(cp, deployment)["running_patch_point"]
    # A download nothing answers: the process runtime's build fetches external_data and fails.
    bad = (CONFIG.format(name="failing") + "external_data:\n  - url: http://127.0.0.1:9/weights.bin\n"
           "    local_data_path: weights.bin\n")
    broken, envelope = watcher.edit("config.yaml", bad)
    answer = ok(send(cp, deployment, envelope))
    assert answer["action"] == "rebuild", answer
    failed = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed")
    rebuild = failed["rebuild"]
    assert rebuild is not None and rebuild["phase"] == "failed", failed
    assert rebuild["tree_hash"] == broken.next_hash and "external_data" in rebuild["reason"], rebuild
    assert "127.0.0.1:9" in rebuild["error"] or "weights.bin" in rebuild["error"], rebuild
    assert rebuild["build_log_tail"] and any("rebuild failed" in line for line in rebuild["build_log_tail"]), rebuild
    assert failed["running_patch_point"] == running
    assert failed["pending_patch_point"] == {"hash": broken.next_hash}
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": None}

    # The next patch builds on the refused tree and clears the failure.
    fixed, envelope = watcher.edit("config.yaml", CONFIG.format(name="failing"))
    assert fixed.prev_patch_hash == broken.next_hash
    ok(send(cp, deployment, envelope))
    assert state(cp, deployment)["rebuild"] is None
    _, envelope = set_marker(watcher, "recovered")
    assert ok(send(cp, deployment, envelope))["action"] in ("hot_swap", "restart")
    assert predict(cp.client, deployment["model_id"])["marker"] == "recovered"


def test_a_rebuilt_replica_that_fails_to_load_leaves_the_old_code_serving(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    deployment, watcher = development(cp, tmp_path, "badload")
    failing = MODEL.format(marker="never") + "\n    def load(self):\n        raise RuntimeError('no weights here')\n"
    _, envelope = watcher.edit("model/model.py", failing)
    ok(send(cp, deployment, envelope, sync=False), 201)
    broken, envelope = watcher.edit("config.yaml", CONFIG.format(name="badload") + "resources:\n  cpu: 500m\n")
    assert ok(send(cp, deployment, envelope))["action"] == "rebuild"
    failed = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed")
    assert failed["rebuild"] is not None and "no weights here" in failed["rebuild"]["error"], failed
    assert failed["pending_patch_point"] == {"hash": broken.next_hash}
    assert predict(cp.client, deployment["model_id"]) == {"marker": "a", "six": None}
    deadline = time.monotonic() + 60
    while len(replica_handles(cp.data_dir, deployment["id"])) != 1:  # the failed one was stopped
        assert time.monotonic() < deadline, replica_handles(cp.data_dir, deployment["id"])
        time.sleep(0.1)


def test_a_save_during_a_rebuild_is_staged_on_top_and_served_when_the_rebuild_ends(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    try:
        root = write_model_dir(tmp_path / "ontop", GATED.format(gate=str(gate), marker="a"), CONFIG.format(name="ontop"))
        deployment, watcher = push_development(cp, root, "ontop"), Watcher(root)
        gate.unlink()
        rebuilt, envelope = watcher.edit("config.yaml", CONFIG.format(name="ontop") + "resources:\n  cpu: 500m\n")
        assert ok(send(cp, deployment, envelope))["action"] == "rebuild"
        wait_for_state(cp, deployment, lambda s: (s["rebuild"] or {}).get("phase") == "deploying")
        on_top, envelope = watcher.edit("model/model.py", GATED.format(gate=str(gate), marker="on-top"))
        answer = ok(send(cp, deployment, envelope))
        assert answer["action"] == "deferred", answer
        assert predict(cp.client, deployment["model_id"])["marker"] == "a"
        gate.write_text("open")
        done = wait_for_state(cp, deployment, lambda s: s["pending_patch_point"] is None)
        assert done == {"running_patch_point": {"hash": on_top.next_hash}, "pending_patch_point": None,
                        "rebuild": None}, done
        assert predict(cp.client, deployment["model_id"])["marker"] == "on-top"
    finally:
        gate.write_text("open")


def test_a_save_during_a_rebuild_that_needs_another_rebuild_gets_it(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    try:
        root = write_model_dir(tmp_path / "twice", GATED.format(gate=str(gate), marker="a"), CONFIG.format(name="twice"))
        deployment, watcher = push_development(cp, root, "twice"), Watcher(root)
        gate.unlink()
        _, envelope = watcher.edit("config.yaml", CONFIG.format(name="twice") + "resources:\n  cpu: 500m\n")
        assert ok(send(cp, deployment, envelope))["action"] == "rebuild"
        wait_for_state(cp, deployment, lambda s: (s["rebuild"] or {}).get("phase") == "deploying")
        _, envelope = watcher.edit("model/model.py", GATED.format(gate=str(gate), marker="second"))
        ok(send(cp, deployment, envelope, sync=False), 201)
        latest, envelope = watcher.edit("config.yaml", CONFIG.format(name="twice") + "resources:\n  cpu: 1\n")
        assert ok(send(cp, deployment, envelope))["action"] == "deferred"
        gate.write_text("open")
        done = wait_for_state(cp, deployment, lambda s: s["pending_patch_point"] is None and s["rebuild"] is None)
        assert done["running_patch_point"] == {"hash": latest.next_hash}, done
        assert predict(cp.client, deployment["model_id"])["marker"] == "second"
    finally:
        gate.write_text("open")


def test_a_staged_patch_hot_reload_choice_survives_a_control_plane_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "cp"
    cp = start_controlplane(data_dir)
    try:
        deployment, watcher = development(cp, tmp_path, "choice")
        _, envelope = watcher.edit("model/model.py", MODEL.format(marker="cold"), hot_reload="off")
        ok(send(cp, deployment, envelope, sync=False), 201)
        cp.terminate()
        cp.close()
        cp = start_controlplane(data_dir, admin_key=cp.admin_key)
        deadline = time.monotonic() + 120
        while (response := cp.client.post(patches_url(deployment) + "/sync", timeout=300)).status_code == 503:
            assert time.monotonic() < deadline, response.text  # until the first tick finds the replica
            time.sleep(0.2)
        answer = ok(response)
        assert answer["action"] == "restart" and "hot reload is off" in answer["reason"], answer
        assert predict(cp.client, deployment["model_id"])["marker"] == "cold"
    finally:
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


def test_a_rebuild_cut_short_by_a_control_plane_kill_is_started_over_while_the_old_code_serves(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "cp"
    gate = tmp_path / "gate"
    gate.write_text("open")
    cp = start_controlplane(data_dir)
    try:
        root = write_model_dir(tmp_path / "resumed", GATED.format(gate=str(gate), marker="a"),
                               CONFIG.format(name="resumed"))
        deployment, watcher = push_development(cp, root, "resumed"), Watcher(root)
        gate.unlink()  # the rebuilt replica's load() waits from now on
        staged, envelope = watcher.edit("model/model.py", GATED.format(gate=str(gate), marker="b"))
        ok(send(cp, deployment, envelope, sync=False), 201)
        patch, envelope = watcher.edit("config.yaml", CONFIG.format(name="resumed") + "resources:\n  cpu: 500m\n")
        assert ok(send(cp, deployment, envelope))["action"] == "rebuild"
        wait_for_state(cp, deployment, lambda s: (s["rebuild"] or {}).get("phase") == "deploying")

        cp.kill()
        cp.close()
        cp = start_controlplane(data_dir, admin_key=cp.admin_key)
        assert first_answer(cp, deployment)["marker"] == "a"  # the old replica serves on
        deploying = wait_for_state(cp, deployment, lambda s: (s["rebuild"] or {}).get("phase") == "deploying")
        assert deploying["rebuild"]["tree_hash"] == patch.next_hash
        assert predict(cp.client, deployment["model_id"])["marker"] == "a"
        gate.write_text("open")
        done = wait_for_state(cp, deployment, lambda s: s["rebuild"] is None or s["rebuild"]["phase"] == "failed")
        assert done == {"running_patch_point": {"hash": patch.next_hash}, "pending_patch_point": None,
                        "rebuild": None}, done
        assert predict(cp.client, deployment["model_id"])["marker"] == "b"
        deadline = time.monotonic() + 60
        while len(replica_handles(data_dir, deployment["id"])) != 1:  # the first run's new replica was stopped
            assert time.monotonic() < deadline, replica_handles(data_dir, deployment["id"])
            time.sleep(0.1)
        # Nothing else of the deployment runs, named by a handle or not: the one serving only.
        serving = current_replica_pid(data_dir, deployment["id"])
        eventually(lambda: sessions_running_under(data_dir / "replicas") == {serving}, timeout=60)
    finally:
        gate.write_text("open")
        cp.close()
        if cp.process.poll() is None:
            cp.terminate()
        stop_replicas(data_dir)


