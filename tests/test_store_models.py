"""Models and deployments: names, deployment-N, production and development, statuses."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Conflict, NotFound, Store, StoreError


def test_a_model_is_found_by_id_or_name_and_a_miss_lists_what_exists(store: Store):
    hello = store.models.create("hello")
    store.models.create("world")
    assert store.models.get(hello.id) == hello
    assert store.models.get("hello") == hello
    with pytest.raises(NotFound) as caught:
        store.models.get("helo")
    assert "hello" in caught.value.hint and "world" in caught.value.hint and hello.id in caught.value.hint
    with pytest.raises(Conflict):
        store.models.create("hello")


def test_get_or_create_creates_once(store: Store):
    first, created = store.models.get_or_create("hello")
    again, created_again = store.models.get_or_create("hello")
    assert (created, created_again) == (True, False)
    assert again == first


def test_deployments_are_numbered_and_the_first_is_production(store: Store):
    model = store.models.create("hello")
    first = store.deployments.create(model.id, config={"model_name": "hello"}, labels={"team": "a"})
    second = store.deployments.create(model.id, config={})
    assert (first.name, second.name) == ("deployment-1", "deployment-2")
    assert first.is_production and not second.is_production
    assert store.deployments.get(model.id, "production").id == first.id
    assert store.deployments.get(model.id, first.id).config == {"model_name": "hello"}
    assert store.deployments.get(model.id, "deployment-2").id == second.id
    assert store.deployments.get(model.id, first.id).labels == {"team": "a"}


def test_a_custom_name_is_kept_and_default_names_step_around_it(store: Store):
    model = store.models.create("hello")
    store.deployments.create(model.id, config={}, name="deployment-2")
    with pytest.raises(Conflict):
        store.deployments.create(model.id, config={}, name="deployment-2")
    with pytest.raises(StoreError, match="invalid deployment name"):
        store.deployments.create(model.id, config={}, name="no spaces")
    assert store.deployments.create(model.id, config={}).name == "deployment-3"


def test_a_wrong_deployment_lists_the_models_deployments(store: Store):
    model = store.models.create("hello")
    made = store.deployments.create(model.id, config={})
    with pytest.raises(NotFound) as caught:
        store.deployments.get(model.id, "nope")
    assert made.id in caught.value.hint and "deployment-1" in caught.value.hint
    with pytest.raises(NotFound):
        store.deployments.get(model.id, "development")
    with pytest.raises(NotFound):
        store.deployments.create("nosuchid", config={})


def test_development_deployment_is_not_production_and_is_one_per_model(store: Store):
    model = store.models.create("hello")
    dev = store.deployments.create(model.id, config={}, is_development=True)
    assert not dev.is_production
    assert store.deployments.get(model.id, "development").id == dev.id
    with pytest.raises(Conflict):
        store.deployments.create(model.id, config={}, is_development=True)
    # The first non-development deployment still becomes production.
    assert store.deployments.create(model.id, config={}).is_production


def test_status_keeps_a_one_line_cause_and_refuses_unknown_statuses(store: Store):
    model = store.models.create("hello")
    deployment = store.deployments.create(model.id, config={})
    failed = store.deployments.set_status(
        deployment.id, "DEPLOY_FAILED", "\nValueError: load() needs weights\nTraceback (most recent call last): ..."
    )
    assert (failed.status, failed.status_detail) == ("DEPLOY_FAILED", "ValueError: load() needs weights")
    assert failed.updated_at >= deployment.updated_at
    assert store.deployments.get(model.id, deployment.id).status == "DEPLOY_FAILED"
    with pytest.raises(StoreError):
        store.deployments.set_status(deployment.id, "ACTIV")
    active = store.deployments.set_status(deployment.id, "ACTIVE")
    assert active.status_detail is None


def test_desired_state_and_promotion(store: Store):
    model = store.models.create("hello")
    first = store.deployments.create(model.id, config={})
    second = store.deployments.create(model.id, config={})
    scaled = store.deployments.set_desired(second.id, replicas=3, state="inactive")
    assert (scaled.desired_replicas, scaled.desired_state) == (3, "inactive")
    with pytest.raises(Conflict) as refused:  # production traffic would only get 404s
        store.deployments.promote(second.id)
    assert refused.value.code == "NOT_PROMOTABLE" and "activate it first" in refused.value.hint
    store.deployments.set_desired(second.id, state="active")
    store.deployments.promote(second.id)
    assert store.deployments.get(model.id, "production").id == second.id
    assert not store.deployments.get_by_id(first.id).is_production
    artifact = store.deployments.set_build_artifact(first.id, {"image": "registry/hello@sha256:ab"})
    assert artifact.build_artifact == {"image": "registry/hello@sha256:ab"}


def test_two_threads_pushing_at_once_get_distinct_names(store: Store):
    model = store.models.create("hello")
    errors: list[BaseException] = []

    def push() -> None:
        try:
            for _ in range(8):
                store.deployments.create(model.id, config={})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = [d.name for d in store.deployments.list(model.id)]
    assert sorted(names) == sorted(f"deployment-{n}" for n in range(1, 17))
    assert sum(d.is_production for d in store.deployments.list(model.id)) == 1


_PUSHER = """
import sys
from pathlib import Path
from truss_cli.controlplane.store import Store
store = Store.open(Path(sys.argv[1]), sys.argv[2] or None)
model, _ = store.models.get_or_create("hello")
for _ in range(8):
    print(store.deployments.create(model.id, config={}).name, flush=True)
"""


def test_two_processes_pushing_at_once_get_distinct_names(tmp_path: Path, database_url: str | None):
    # Two control planes (or two workers) on one database: only the database can arbitrate.
    Store.open(tmp_path / "data", database_url).close()  # migrate once, before the race
    pushers = [
        subprocess.Popen(
            [sys.executable, "-c", _PUSHER, str(tmp_path / "data"), database_url or ""],
            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in pushers]
    assert [p.returncode for p in pushers] == [0, 0]
    names = outputs[0] + outputs[1]
    assert sorted(names) == sorted(f"deployment-{n}" for n in range(1, 17))
    with Store.open(tmp_path / "data", database_url) as store:
        assert len(store.models.list()) == 1
        assert sorted(d.name for d in store.deployments.list()) == sorted(names)
