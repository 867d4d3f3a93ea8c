"""The store's environments, on SQLite and PostgreSQL: production with every model, the name
and settings rules, and `set_current` keeping deployments.environment / is_production equal to
what each environment serves (the production flip of `deployments.promote` included), the
replaced deployment's cleanup in the same transaction, and one promotion at a time."""

from __future__ import annotations

import pytest

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import Conflict, NotFound, Store, StoreError, schema, states
from truss_cli.controlplane.store._rows import now
from truss_cli.controlplane.store.database import write_transaction


def _serving(store: Store, model_id: str) -> dict[str, tuple[str | None, bool]]:
    """deployment name -> (its environment, is_production), as the deployments table says."""
    return {d.name: (d.environment, d.is_production) for d in store.deployments.list(model_id)}


def test_every_model_has_production_serving_its_first_published_deployment(store: Store):
    model = store.models.create("hello")
    assert [(e.name, e.current_deployment_id) for e in store.environments.list(model.id)] == [("production", None)]
    store.deployments.create(model.id, config={}, is_development=True)
    first = store.deployments.create(model.id, config={})
    store.deployments.create(model.id, config={})
    assert store.environments.get(model.id, "production").current_deployment_id == first.id
    assert _serving(store, model.id) == {"development": (None, False), "deployment-2": ("production", True),
                                         "deployment-3": (None, False)}


def test_names_settings_and_the_production_rules(store: Store):
    model = store.models.create("hello")
    staging = store.environments.create(model.id, "staging", autoscaling_settings={"max_replica": 3},
                                        promotion_settings={"rolling_deploy": True})
    assert staging.autoscaling_settings["max_replica"] == 3 and staging.promotion_settings["rolling_deploy"]
    assert [e.name for e in store.environments.list(model.id)] == ["production", "staging"]
    with pytest.raises(Conflict) as caught:
        store.environments.create(model.id, "production")
    assert "cannot be created twice" in str(caught.value)
    with pytest.raises(Conflict):
        store.environments.create(model.id, "staging")
    for bad in ("no spaces", "development", "a/b"):
        with pytest.raises(StoreError) as caught:
            store.environments.create(model.id, bad)
        assert caught.value.code == "INVALID_NAME"
    with pytest.raises(StoreError) as caught:
        store.environments.create(model.id, "qa", autoscaling_settings={"min_replica": 5, "max_replica": 2})
    assert caught.value.code == "INVALID_SETTINGS" and "max_replica" in str(caught.value)

    with pytest.raises(NotFound) as missing:
        store.environments.get(model.id, "stagin")
    assert missing.value.existing == ["production", "staging"]
    with pytest.raises(Conflict) as caught:
        store.environments.delete(model.id, "production")
    assert caught.value.code == "PRODUCTION_NOT_DELETABLE"

    # Partial updates: the nested rolling config too; the same values again change nothing.
    updated, changed = store.environments.update(
        model.id, "staging", promotion_settings={"rolling_deploy_config": {"stabilization_time_seconds": 30}})
    assert changed and updated.promotion_settings["rolling_deploy"]
    assert updated.promotion_settings["rolling_deploy_config"]["stabilization_time_seconds"] == 30
    assert updated.promotion_settings["rolling_deploy_config"]["max_surge_percent"] == 10
    assert store.environments.update(model.id, "staging", autoscaling_settings={"max_replica": 3})[1] is False
    with pytest.raises(StoreError):
        store.environments.update(model.id, "staging", promotion_settings={"ramp_up_while_promoting": True})
    assert store.environments.update(model.id, "staging", autoscaling_settings=None)[0].autoscaling_settings is None


def test_set_current_and_promote_keep_the_deployments_in_step(store: Store):
    model = store.models.create("hello")
    one = store.deployments.create(model.id, config={})
    two = store.deployments.create(model.id, config={})
    three = store.deployments.create(model.id, config={})
    store.environments.create(model.id, "staging")

    env, previous = store.environments.set_current(model.id, "staging", two.id)
    assert (env.current_deployment_id, previous) == (two.id, None)
    _, previous = store.environments.set_current(model.id, "staging", three.id)
    assert previous == two.id
    assert _serving(store, model.id) == {"deployment-1": ("production", True), "deployment-2": (None, False),
                                         "deployment-3": ("staging", False)}

    # staging -> production: it leaves staging, which then serves nothing.
    promoted = store.deployments.promote(three.id)
    assert promoted.is_production and promoted.environment == "production"
    assert store.environments.get(model.id, "production").current_deployment_id == three.id
    assert store.environments.get(model.id, "staging").current_deployment_id is None
    assert _serving(store, model.id) == {"deployment-1": (None, False), "deployment-2": (None, False),
                                         "deployment-3": ("production", True)}

    # promote into a named environment; the production deployment may not leave production.
    assert store.deployments.promote(one.id, "staging").environment == "staging"
    with pytest.raises(Conflict) as caught:
        store.deployments.promote(three.id, "staging")
    assert "production" in caught.value.hint
    with pytest.raises(NotFound) as missing:
        store.deployments.promote(two.id, "qa")
    assert missing.value.existing == ["production", "staging"]

    # Deleting staging leaves its deployment in no environment.
    store.environments.delete(model.id, "staging")
    assert store.deployments.get_by_id(one.id).environment is None
    # An inactive deployment is refused with how to fix it.
    store.deployments.set_status(two.id, states.ACTIVE)
    store.deployments.deactivate(two.id)
    with pytest.raises(Conflict) as caught:
        store.deployments.promote(two.id)
    assert "activate it first" in caught.value.hint


def test_a_deleted_deployment_leaves_its_environment_serving_nothing(store: Store):
    model = store.models.create("hello")
    store.deployments.create(model.id, config={})
    second = store.deployments.create(model.id, config={})
    store.environments.create(model.id, "staging")
    store.environments.set_current(model.id, "staging", second.id)
    store.deployments.delete(second.id)
    assert store.environments.get(model.id, "staging").current_deployment_id is None


def test_a_promotion_cleans_up_the_deployment_it_replaces_in_the_same_transaction(store: Store):
    model = store.models.create("hello")
    one, two, three = (store.deployments.create(model.id, config={}) for _ in range(3))
    for deployment in (one, two, three):
        store.deployments.set_status(deployment.id, states.ACTIVE)

    promoted, swap = store.deployments.promote_into(two.id)  # production's default: SCALE_TO_ZERO
    assert (swap.previous_deployment_id, swap.cleanup.value) == (one.id, "SCALE_TO_ZERO")
    assert store.deployments.get_by_id(one.id).desired_replicas == 0
    _, swap = store.deployments.promote_into(one.id, scale_down_previous=False)
    assert swap.cleanup.value == "KEEP" and store.deployments.get_by_id(one.id).desired_replicas == 1  # serves again
    assert store.deployments.get_by_id(two.id).desired_replicas == 1
    assert store.deployments.promote_into(one.id)[1] is None  # already serving: nothing to do

    store.environments.update(model.id, "production", promotion_settings={"promotion_cleanup_strategy": "DEACTIVATE"})
    _, swap = store.deployments.promote_into(three.id)
    replaced = store.deployments.get_by_id(one.id)
    assert swap.cleanup.value == "DEACTIVATE" and (replaced.desired_state, replaced.status) == ("inactive", "DEACTIVATING")

    # Push's choice rides on the row: what the reconciler's promote(id) reads.
    store.environments.create(model.id, "staging", promotion_settings={"promotion_cleanup_strategy": "SCALE_TO_ZERO"})
    store.environments.set_current(model.id, "staging", two.id)
    pushed = store.deployments.create(model.id, config={"promote_environment": "staging",
                                                        "scale_down_previous_deployment": False})
    assert store.deployments.promote(pushed.id).environment == "staging"
    assert store.deployments.get_by_id(two.id).desired_replicas == 1  # preserved


def test_one_promotion_at_a_time(store: Store):
    model = store.models.create("hello")
    one, two = (store.deployments.create(model.id, config={}) for _ in range(2))
    production = store.environments.get(model.id, "production")
    with write_transaction(store.engine) as db:
        db.execute(schema.promotions.insert().values(
            id="p1", model_id=model.id, environment_id=production.id, candidate_deployment_id=two.id,
            previous_deployment_id=one.id, kind="rolling", status="PAUSED", settings={}, created_at=now(),
            updated_at=now()))
    with pytest.raises(Conflict) as caught:
        store.deployments.promote(two.id)
    assert caught.value.code == "PROMOTION_IN_PROGRESS" and "p1" in str(caught.value) and "PAUSED" in str(caught.value)
    assert store.environments.unfinished_promotions(model.id)[production.id].status == "PAUSED"
    with write_transaction(store.engine) as db:
        db.execute(schema.promotions.update().values(finished_at=now(), status="CANCELED"))
    assert store.deployments.promote(two.id).is_production
