"""The store's side of development deployments, on SQLite and PostgreSQL: scale to zero and
wake are compare-and-sets (a deactivated deployment is never put to sleep, only a sleeping one
wakes; since issue 11 a published one scales to zero too, when its autoscaler wants none); a rebuild gives the development deployment another tree and queues its
build in one go; a build superseded by a newer one of the same deployment never sets it
DEPLOYING with the old artifact."""

from __future__ import annotations

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Store, StoreError

TREE_A = "a" * 64
TREE_B = "b" * 64


def _development(store: Store):
    model, _ = store.models.get_or_create("dev")
    return model, store.deployments.create(model.id, config={}, archive_sha256=TREE_A, is_development=True,
                                           status="ACTIVE")


def test_only_a_serving_deployment_scales_to_zero_and_only_a_sleeping_one_wakes(store: Store) -> None:
    model, development = _development(store)
    building = store.deployments.create(model.id, config={})
    assert not store.deployments.scale_to_zero(building.id)  # not serving yet
    published = store.deployments.create(model.id, config={}, status="ACTIVE")
    assert store.deployments.scale_to_zero(published.id)  # issue 11: its autoscaler wanted none
    assert not store.deployments.wake(development.id)  # awake: nothing to do

    assert store.deployments.scale_to_zero(development.id)
    asleep = store.deployments.get_by_id(development.id)
    assert (asleep.status, asleep.desired_state) == ("SCALED_TO_ZERO", "active")
    assert not store.deployments.scale_to_zero(development.id)  # once
    assert store.deployments.wake(development.id)
    assert store.deployments.get_by_id(development.id).status == "WAKING_UP"
    assert not store.deployments.wake(development.id)

    store.deployments.set_status(development.id, "ACTIVE")
    store.deployments.deactivate(development.id)
    assert not store.deployments.scale_to_zero(development.id)
    assert store.deployments.get_by_id(development.id).status == "DEACTIVATING"


def test_a_rebuild_takes_the_new_tree_and_a_superseded_build_never_starts_the_old_one(store: Store) -> None:
    model, development = _development(store)
    store.builds.queue(development.id)
    old = store.builds.claim()
    assert old is not None

    rebuilt = store.deployments.rebuild_development(development.id, archive_sha256=TREE_B, config={"x": 1},
                                                    labels={"l": 2})
    assert (rebuilt.status, rebuilt.archive_sha256, rebuilt.config, rebuilt.labels) == (
        "BUILDING", TREE_B, {"x": 1}, {"l": 2})
    # The old build ends after the rebuild was asked: the deployment waits for the new one.
    store.builds.finish(old.id, succeeded=True, artifact={"reference": "old"})
    after_old = store.deployments.get_by_id(development.id)
    assert after_old.status == "BUILDING" and after_old.build_artifact is None
    new = store.builds.claim()
    assert new is not None and new.id != old.id
    store.builds.finish(new.id, succeeded=True, artifact={"reference": "new"})
    done = store.deployments.get_by_id(development.id)
    assert done.status == "DEPLOYING" and done.build_artifact == {"reference": "new"}

    published = store.deployments.create(model.id, config={})
    try:
        store.deployments.rebuild_development(published.id, archive_sha256=TREE_B, config={}, labels={})
    except StoreError as exc:
        assert "not the development deployment" in exc.message
    else:
        raise AssertionError("a published deployment was rebuilt as the development one")


def test_a_rebuilt_tree_is_not_shown_done_until_its_replica_is_routed(store: Store) -> None:
    # A client reading patches/state takes `rebuild: null` for "the new code serves": between
    # `rebuilt` (the row takes the new tree) and `switched` (the gateway routes to the new
    # replica) the rebuild stays recorded, and a patch staged meanwhile waits behind it.
    _, development = _development(store)
    store.patch_points.stage(development.id, TREE_A, TREE_B)
    assert store.patch_points.begin_rebuild(development.id, TREE_B, "resources changed")
    rebuilt = store.patch_points.rebuilt(development.id, TREE_B, {"kind": "process"}, {"x": 1})
    assert rebuilt is not None
    assert (rebuilt.running_tree, rebuilt.rebuild["phase"], rebuilt.rebuilding) == (TREE_B, "switching", True)
    store.patch_points.switched(development.id, TREE_A)  # another tree's rebuild: nothing
    assert store.deployments.get_by_id(development.id).rebuilding
    store.patch_points.switched(development.id, TREE_B)
    done = store.deployments.get_by_id(development.id)
    assert (done.running_tree, done.rebuild, done.rebuilding) == (TREE_B, None, False)
