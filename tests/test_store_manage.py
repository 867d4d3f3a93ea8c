"""The store's side of managing models and deployments, on SQLite and PostgreSQL: versions,
names, the deactivate/activate/promote/delete/prune rules, usage that outlives deployments,
and migration 0002 numbering the deployments an older control plane made."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Conflict, NotFound, Store, StoreError, UsageAccrual, states
from truss_cli.controlplane.store.database import _alembic_config, create_engine, database_url as resolve_url, write_transaction

ARTIFACT = {"kind": "process", "deployment_id": "x", "reference": "/envs/abc", "data": {}}


def test_versions_bump_the_highest_so_far_and_the_development_deployment_has_none(store: Store):
    model = store.models.create("hello")
    made = [store.deployments.create(model.id, config={}, version_bump=bump).version
            for bump in ("PATCH", "MINOR", "MAJOR", "PATCH", "MINOR")]
    assert made == ["0.1.0", "0.2.0", "1.0.0", "1.0.1", "1.1.0"]
    assert store.deployments.create(model.id, config={}, is_development=True).version is None
    assert store.models.get(model.id).last_version == "1.1.0"
    with pytest.raises(StoreError) as caught:
        store.deployments.create(model.id, config={}, version_bump="BIG")
    assert caught.value.code == "INVALID_VERSION_BUMP"


def test_deleted_deployments_keep_their_version_and_number_to_themselves(store: Store):
    model = store.models.create("hello")
    first = store.deployments.create(model.id, config={})
    second = store.deployments.create(model.id, config={})
    store.deployments.delete(second.id)
    third = store.deployments.create(model.id, config={})
    assert (first.name, third.name, third.version) == ("deployment-1", "deployment-3", "0.3.0")


def test_rename_is_unique_within_the_model_and_the_usage_follows(store: Store):
    model = store.models.create("hello")
    other = store.models.create("other")
    first = store.deployments.create(model.id, config={})
    second = store.deployments.create(model.id, config={})
    store.deployments.create(other.id, config={}, name="stable")  # another model's name is no obstacle
    store.usage.accrue([UsageAccrual(first.id, model.id, "hello", "deployment-1", replica_seconds=5.0)])
    assert store.deployments.rename(first.id, "stable").name == "stable"
    assert [t.deployment_name for t in store.usage.totals("hello") if t.deployment_id == first.id] == ["stable"]
    for name, code in (("stable", "NAME_TAKEN"), ("a b", "INVALID_NAME"), ("development", "INVALID_NAME")):
        with pytest.raises(StoreError) as caught:
            store.deployments.rename(second.id, name)
        assert caught.value.code == code, name
    development = store.deployments.create(model.id, config={}, is_development=True)
    assert development.name == "development"
    with pytest.raises(StoreError) as caught:
        store.deployments.rename(development.id, "dev")
    assert caught.value.code == "DEVELOPMENT_NOT_RENAMABLE"


def test_deactivate_and_activate_follow_the_deployments_life(store: Store):
    model = store.models.create("hello")
    deployment = store.deployments.create(model.id, config={})
    with pytest.raises(Conflict) as caught:  # BUILDING: nothing runs yet
        store.deployments.deactivate(deployment.id)
    assert caught.value.code == "NOT_DEACTIVATABLE"
    store.deployments.set_build_artifact(deployment.id, ARTIFACT)
    store.deployments.set_status(deployment.id, states.ACTIVE)
    assert store.deployments.activate(deployment.id)[1] is False  # active already: unchanged

    going = store.deployments.deactivate(deployment.id)
    assert (going.status, going.desired_state) == (states.DEACTIVATING, states.DESIRED_INACTIVE)
    assert store.deployments.deactivate(deployment.id).status == states.DEACTIVATING
    with pytest.raises(Conflict) as caught:  # its replicas are still stopping
        store.deployments.activate(deployment.id)
    assert caught.value.code == "NOT_ACTIVATABLE"
    assert store.deployments.finish_deactivation(deployment.id)
    assert store.deployments.get_by_id(deployment.id).status == states.INACTIVE

    back, changed = store.deployments.activate(deployment.id)
    assert changed and (back.status, back.desired_state) == (states.DEPLOYING, states.DESIRED_ACTIVE)
    assert not store.deployments.finish_deactivation(deployment.id)  # a late worker changes nothing


def test_only_a_failed_deployment_is_retried_and_it_cannot_be_activated(store: Store):
    model = store.models.create("hello")
    deployment = store.deployments.create(model.id, config={})
    with pytest.raises(Conflict) as caught:
        store.builds.retry(deployment.id)
    assert caught.value.code == "NOT_RETRYABLE"
    store.deployments.set_status(deployment.id, states.BUILD_FAILED, "no such package")
    with pytest.raises(Conflict) as caught:
        store.deployments.activate(deployment.id)
    assert caught.value.code == "NOT_ACTIVATABLE" and "retry" in caught.value.hint
    build = store.builds.retry(deployment.id)
    assert build.state == states.BUILD_QUEUED
    assert store.deployments.get_by_id(deployment.id).status == states.BUILDING


def test_production_is_not_deleted_and_a_delete_returns_the_replicas_to_stop(store: Store):
    model = store.models.create("hello")
    production = store.deployments.create(model.id, config={})
    with pytest.raises(Conflict) as caught:
        store.deployments.delete(production.id)
    assert caught.value.code == "PRODUCTION_NOT_DELETABLE" and "truss models delete hello" in caught.value.hint
    other = store.deployments.create(model.id, config={})
    with pytest.raises(Conflict) as caught:
        store.deployments.delete(production.id)
    assert "truss deployments promote --model hello deployment-2" in caught.value.hint
    replica = store.replicas.record(other.id, "process", {"replica_id": "r1"})
    removed = store.deployments.delete(other.id)
    assert [d.id for d in removed.deployments] == [other.id] and [r.id for r in removed.replicas] == [replica.id]
    assert store.replicas.list() == [] and [d.id for d in store.deployments.list()] == [production.id]
    gone = {t.deployment_id: t for t in store.usage.totals("hello")}[other.id]
    assert gone.deleted and (gone.replica_seconds, gone.requests, gone.deployment_name) == (0.0, 0, "deployment-2")


def test_prune_keeps_the_newest_n_besides_production_and_development(store: Store):
    model = store.models.create("hello")
    made = [store.deployments.create(model.id, config={}) for _ in range(5)]
    development = store.deployments.create(model.id, config={}, is_development=True)
    dry, kept = store.deployments.prune(model.id, 2, dry_run=True)
    assert [d.name for d in dry.deployments] == ["deployment-2", "deployment-3"]
    assert len(store.deployments.list(model.id)) == 6
    removed, kept = store.deployments.prune(model.id, 2)
    assert [d.id for d in removed.deployments] == [made[1].id, made[2].id]
    assert [d.id for d in kept] == [made[0].id, made[3].id, made[4].id, development.id]
    assert store.deployments.prune(model.id, 2)[0].deployments == ()
    with pytest.raises(StoreError):
        store.deployments.prune(model.id, -1)


def test_promotion_refuses_what_could_not_serve(store: Store):
    model = store.models.create("hello")
    store.deployments.create(model.id, config={})
    failed = store.deployments.create(model.id, config={})
    store.deployments.set_status(failed.id, states.DEPLOY_FAILED, "load() raised")
    with pytest.raises(Conflict) as caught:
        store.deployments.promote(failed.id)
    assert caught.value.code == "NOT_PROMOTABLE" and "retry" in caught.value.hint
    development = store.deployments.create(model.id, config={}, is_development=True)
    with pytest.raises(Conflict):
        store.deployments.promote(development.id)


def test_model_names_descriptions_and_readmes(store: Store):
    for bad in ("a.b", "a/b", "ünïcode", "", " " * 3):
        with pytest.raises(StoreError) as caught:
            store.models.create(bad)
        assert caught.value.code == "INVALID_MODEL_NAME", bad
    model, created = store.models.get_or_create("My model_2-b", readme="# Hi\n")
    assert created and model.readme == "# Hi\n"
    assert store.models.get_or_create("My model_2-b", readme="# Other\n")[0].readme == "# Hi\n"
    edited = store.models.describe(model.id, description="greets")
    assert (edited.description, edited.readme) == ("greets", "# Hi\n")
    assert store.models.describe(model.id, readme="").readme == ""


def test_usage_is_kept_per_hour_and_outlives_the_model(store: Store):
    model = store.models.create("hello")
    deployment = store.deployments.create(model.id, config={})
    idle = store.deployments.create(model.id, config={})
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    accrual = UsageAccrual(deployment.id, model.id, "hello", deployment.name, replica_seconds=30.0, requests=3)
    store.usage.accrue([accrual], at=yesterday)
    store.usage.accrue([accrual])
    store.usage.accrue([accrual])
    totals = {t.deployment_id: t for t in store.usage.totals()}
    assert (totals[deployment.id].replica_seconds, totals[deployment.id].requests) == (90.0, 9)
    assert (totals[idle.id].requests, totals[idle.id].deleted) == (0, False)
    recent = {t.deployment_id: t for t in store.usage.totals(since=datetime.now(timezone.utc) - timedelta(hours=2))}
    assert recent[deployment.id].requests == 6

    store.models.delete(model.id)
    # Counted after the delete (the reconciler's last flush): kept, under the names it had.
    store.usage.accrue([accrual])
    gone = {t.deployment_id: t for t in store.usage.totals("hello")}
    assert gone[deployment.id].requests == 12 and gone[deployment.id].deleted
    assert gone[idle.id].deleted and gone[idle.id].model_name == "hello"
    with pytest.raises(NotFound) as caught:
        store.usage.totals("nope")
    assert f"hello ({model.id})" in caught.value.hint


def test_migration_0002_versions_the_deployments_an_older_control_plane_made(tmp_path: Path, database_url: str | None):
    engine = create_engine(resolve_url(tmp_path / "data", database_url))
    config = _alembic_config()
    with write_transaction(engine) as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0001")
    stamp = datetime(2024, 1, 1)
    with write_transaction(engine) as db:
        db.execute(sa.text("INSERT INTO models (id, name, created_at) VALUES ('m1', 'hello', :t)"), {"t": stamp})
        for ordinal, development in ((1, False), (2, True), (3, False)):
            db.execute(sa.text(
                "INSERT INTO deployments (id, model_id, name, ordinal, is_production, is_development, status, "
                "desired_replicas, desired_state, config, labels, created_at, updated_at) VALUES "
                "(:id, 'm1', :name, :ordinal, :production, :development, 'ACTIVE', 1, 'active', '{}', '{}', :t, :t)"
            ), {"id": f"d{ordinal}", "name": f"deployment-{ordinal}", "ordinal": ordinal,
                "production": ordinal == 1, "development": development, "t": stamp})
    engine.dispose()
    with Store.open(tmp_path / "data", database_url) as store:
        assert [(d.name, d.version) for d in store.deployments.list()] == [
            ("deployment-1", "0.1.0"), ("deployment-2", None), ("deployment-3", "0.2.0")]
        model = store.models.get("hello")
        assert (model.description, model.readme, model.last_version) == ("", "", "0.2.0")
        assert store.deployments.create(model.id, config={}).name == "deployment-4"
