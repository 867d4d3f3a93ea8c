"""A development deployment's last syncs on SQLite and PostgreSQL (migration 0007): what the
dashboard's Development tab and `GET .../patches/history` show. Recorded newest first, the
newest 50 kept per deployment, another deployment's rows untouched, gone with the deployment."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import NotFound, Store, schema
from truss_cli.controlplane.store.dev_syncs import KEEP, PATHS_KEPT, changes_between

TREE_A, TREE_B = "a" * 64, "b" * 64


def _development(store: Store, name: str = "dev"):
    model, _ = store.models.get_or_create(name)
    return store.deployments.create(model.id, config={}, archive_sha256=TREE_A, is_development=True, status="ACTIVE")


def test_a_sync_is_recorded_with_what_changed_how_and_how_long(store: Store) -> None:
    development = _development(store)
    changes = changes_between({"model/model.py": ("x", 0o644), "old.txt": ("y", 0o644)},
                              {"model/model.py": ("z", 0o644), "new.txt": ("w", 0o644)})
    store.dev_syncs.record(development.id, from_tree=TREE_A, to_tree=TREE_B, changes=changes, action="hot_swap",
                           reason="only predict changed", ms=41.5)
    failed = store.dev_syncs.record(development.id, from_tree=TREE_B, to_tree=TREE_A, changes=changes,
                                    action="failed", ms=12.0,
                                    error="SyntaxError: expected ':' (model.py, line 9)\n  def predict(self)\n")
    recent = store.dev_syncs.recent(development.id)
    assert [s.action for s in recent] == ["failed", "hot_swap"]  # newest first
    swap = recent[1]
    assert (swap.from_tree, swap.to_tree, swap.ms, swap.reason, swap.error) == (TREE_A, TREE_B, 41.5, "only predict changed", None)
    assert swap.changes == {"added": 1, "updated": 1, "deleted": 1, "paths": [
        {"path": "model/model.py", "change": "updated"}, {"path": "new.txt", "change": "added"},
        {"path": "old.txt", "change": "deleted"}]}
    assert failed.error == "SyntaxError: expected ':' (model.py, line 9)"  # the first line only
    assert swap.to_dict()["synced_at"].startswith(str(swap.synced_at.year))


def test_only_the_first_paths_are_kept_but_the_counts_cover_all() -> None:
    new = {f"data/{i:03}.txt": ("x", 0o644) for i in range(PATHS_KEPT + 15)}
    changes = changes_between({}, new)
    assert changes["added"] == PATHS_KEPT + 15 and changes["updated"] == changes["deleted"] == 0
    assert [p["path"] for p in changes["paths"]] == sorted(new)[:PATHS_KEPT]


def test_the_newest_fifty_are_kept_per_deployment(store: Store) -> None:
    development, other = _development(store, "dev"), _development(store, "other")
    store.dev_syncs.record(other.id, from_tree=TREE_A, to_tree=TREE_B, changes={}, action="restart")
    for i in range(KEEP + 7):
        store.dev_syncs.record(development.id, from_tree=TREE_A, to_tree=TREE_B, changes={}, action="hot_swap", ms=float(i))
    recent = store.dev_syncs.recent(development.id, limit=1000)
    assert len(recent) == KEEP
    assert [s.ms for s in recent] == [float(i) for i in reversed(range(7, KEEP + 7))]  # the oldest 7 pruned
    with store.engine.connect() as db:
        rows = db.execute(sa.select(sa.func.count()).select_from(schema.dev_syncs)
                          .where(schema.dev_syncs.c.deployment_id == development.id)).scalar()
    assert rows == KEEP  # pruned in the table, not only in the read
    assert [s.action for s in store.dev_syncs.recent(other.id)] == ["restart"]
    assert [s.ms for s in store.dev_syncs.recent(development.id, limit=2)] == [float(KEEP + 6), float(KEEP + 5)]


def test_a_deleted_deployments_syncs_go_with_it(store: Store) -> None:
    development = _development(store)
    store.dev_syncs.record(development.id, from_tree=TREE_A, to_tree=TREE_B, changes={}, action="restart")
    store.deployments.delete(development.id)
    with store.engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(schema.dev_syncs)).scalar() == 0
    with pytest.raises(NotFound):  # a sync answered just before the delete is not kept
        store.dev_syncs.record(development.id, from_tree=TREE_A, to_tree=TREE_B, changes={}, action="restart")


def test_a_rebuilds_end_is_recorded_with_the_time_since_the_sync_that_asked_for_it(store: Store) -> None:
    development = _development(store)
    changes = changes_between({"config.yaml": ("x", 0o644)}, {"config.yaml": ("y", 0o644)})
    store.patch_points.stage(development.id, TREE_A, TREE_B)
    store.dev_syncs.record(development.id, from_tree=TREE_A, to_tree=TREE_B, changes=changes, action="rebuild",
                           reason="config.yaml: python_version changed", ms=12.0)
    assert store.patch_points.begin_rebuild(development.id, TREE_B, "config.yaml: python_version changed")
    assert store.patch_points.rebuilt(development.id, TREE_B, {"kind": "env"}, {}) is not None
    assert [s.action for s in store.dev_syncs.recent(development.id)] == ["rebuild"]  # not routed yet
    store.patch_points.switched(development.id, TREE_B)
    rebuilt, asked = store.dev_syncs.recent(development.id)
    assert (rebuilt.action, rebuilt.from_tree, rebuilt.to_tree, rebuilt.error) == ("rebuilt", TREE_A, TREE_B, None)
    assert rebuilt.changes == asked.changes and rebuilt.reason == asked.reason
    assert rebuilt.ms is not None and rebuilt.ms >= 0
    store.patch_points.switched(development.id, TREE_B)  # once
    assert len(store.dev_syncs.recent(development.id)) == 2


def test_a_failed_rebuild_is_recorded_once_with_its_error(store: Store) -> None:
    development = _development(store)
    store.patch_points.stage(development.id, TREE_A, TREE_B)
    assert store.patch_points.begin_rebuild(development.id, TREE_B, "config.yaml: system_packages changed")
    assert store.patch_points.rebuild_phase(development.id, TREE_B, "failed", "the build failed (exit code 100)\nE: ...")
    assert store.patch_points.rebuild_phase(development.id, TREE_B, "failed", "the build failed (exit code 100)")
    (failed,) = store.dev_syncs.recent(development.id)  # no sync asked for it: no changes, no ms
    assert (failed.action, failed.error, failed.ms, failed.changes) == (
        "failed", "rebuild: the build failed (exit code 100)", None, {})
