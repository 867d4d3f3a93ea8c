"""The build queue and replica rows: claims are exclusive, a crash's running build is retried,
a build's end sets its deployment's status in the same transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Conflict, NotFound, Store, StoreError


def _deployment(store: Store, name: str = "hello"):
    model, _ = store.models.get_or_create(name)
    return store.deployments.create(model.id, config={})


def test_a_build_runs_once_and_its_end_sets_the_deployment_status(store: Store):
    deployment = _deployment(store)
    queued = store.builds.queue(deployment.id, log_path="/logs/b.log")
    assert store.deployments.get_by_id(deployment.id).status == "BUILDING"
    claimed = store.builds.claim()
    assert claimed is not None and (claimed.id, claimed.state, claimed.attempts) == (queued.id, "running", 1)
    assert store.builds.claim() is None
    done = store.builds.finish(claimed.id, succeeded=True, artifact={"environment": "/cache/envs/abc"})
    assert done.state == "succeeded" and done.finished_at is not None
    after = store.deployments.get_by_id(deployment.id)
    assert (after.status, after.build_artifact) == ("DEPLOYING", {"environment": "/cache/envs/abc"})
    with pytest.raises(Conflict):
        store.builds.finish(claimed.id, succeeded=False, cause="twice")


def test_a_failed_build_leaves_its_cause_on_the_deployment(store: Store):
    deployment = _deployment(store)
    build = store.builds.queue(deployment.id)
    store.builds.claim()
    store.builds.finish(build.id, succeeded=False, cause="ERROR: No matching distribution found for nosuchpkg==9\n...")
    after = store.deployments.get_by_id(deployment.id)
    assert (after.status, after.status_detail) == ("BUILD_FAILED", "ERROR: No matching distribution found for nosuchpkg==9")
    assert store.builds.latest(deployment.id).cause == after.status_detail


def test_builds_are_claimed_oldest_first(store: Store):
    first = store.builds.queue(_deployment(store, "a").id)
    second = store.builds.queue(_deployment(store, "b").id)
    assert [store.builds.claim().id, store.builds.claim().id] == [first.id, second.id]


def test_concurrent_workers_never_take_the_same_build(store: Store):
    queued = {store.builds.queue(_deployment(store).id).id for _ in range(24)}
    taken: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (build := store.builds.claim()) is not None:
            with lock:
                taken.append(build.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(queued)  # each one exactly once


_CLAIMER = """
import sys, time
from pathlib import Path
from truss_cli.controlplane.store import Store
store = Store.open(Path(sys.argv[1]), sys.argv[2] or None)
build = store.builds.claim()
print(build.id, flush=True)
time.sleep(600)  # "building" until killed
"""


def test_a_build_running_when_the_control_plane_died_is_queued_again(tmp_path: Path, database_url: str | None):
    with Store.open(tmp_path / "data", database_url) as store:
        build = store.builds.queue(_deployment(store).id)
    worker = subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, str(tmp_path / "data"), database_url or ""],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    )
    assert worker.stdout.readline().strip() == build.id
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    with Store.open(tmp_path / "data", database_url) as store:
        assert store.builds.get(build.id).state == "running"
        assert [b.id for b in store.builds.requeue_interrupted()] == [build.id]
        again = store.builds.claim()
        assert (again.id, again.attempts) == (build.id, 2)


def test_replicas_keep_the_handle_a_runtime_re_adopts_them_by(store: Store):
    deployment = _deployment(store)
    handle = {"url": "http://127.0.0.1:41234", "pid": 4321, "status_file": "/data/replicas/r/status.json"}
    replica = store.replicas.record(deployment.id, "process", handle)
    assert store.replicas.list(deployment.id) == [replica]
    ready = store.replicas.set_phase(replica.id, "ready")
    assert (ready.phase, ready.handle) == ("ready", handle)
    restarted = store.replicas.restarted(replica.id, {**handle, "pid": 4400})
    assert (restarted.restarts, restarted.handle["pid"], restarted.phase) == (1, 4400, "starting")
    with pytest.raises(StoreError):
        store.replicas.set_phase(replica.id, "sleepy")
    store.replicas.remove(replica.id)
    with pytest.raises(NotFound):
        store.replicas.get(replica.id)
