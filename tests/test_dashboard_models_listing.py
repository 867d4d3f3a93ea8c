"""The Models page's reads (store/model_listing.py) on SQLite and PostgreSQL: the count of
models a search matches, one page of them in the order they were made, their deployments, and
their requests since a time (deleted deployments' not). A search is a substring, not a LIKE
pattern: `_` and `%` match only themselves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane.store import UsageAccrual, states
from truss_cli.controlplane.store.model_listing import list_models

LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


def test_a_page_of_the_models_a_search_matches_in_the_order_they_were_made(store):
    for name in ("Alpha-1", "beta", "alpha-2", "alpha-3"):
        store.models.create(name)
    everything = list_models(store.engine, "", 0, 50, LONG_AGO)
    assert everything.matching == 4 and [m.name for m in everything.models] == ["Alpha-1", "beta", "alpha-2", "alpha-3"]
    second = list_models(store.engine, "ALPHA", 1, 1, LONG_AGO)
    assert second.matching == 3 and [m.name for m in second.models] == ["alpha-2"]
    assert list_models(store.engine, "alpha", 3, 2, LONG_AGO).models == []


def test_a_search_is_a_plain_substring(store):
    for name in ("a_b", "axb", "a b"):
        store.models.create(name)
    assert [m.name for m in list_models(store.engine, "a_b", 0, 10, LONG_AGO).models] == ["a_b"]
    assert list_models(store.engine, "%", 0, 10, LONG_AGO).matching == 0


def test_each_model_carries_its_deployments_and_requests_since(store):
    model = store.models.create("counted")
    kept = store.deployments.create(model.id, config={}, status=states.ACTIVE)
    gone = store.deployments.create(model.id, config={}, status=states.ACTIVE)
    other = store.models.create("other")
    now = datetime.now(timezone.utc)
    store.usage.accrue([UsageAccrual(deployment_id=d.id, model_id=model.id, model_name=model.name,
                                     deployment_name=d.name, replica_seconds=1.0, requests=7) for d in (kept, gone)],
                       at=now)
    store.usage.accrue([UsageAccrual(deployment_id=kept.id, model_id=model.id, model_name=model.name,
                                     deployment_name=kept.name, replica_seconds=1.0, requests=1000)],
                       at=now - timedelta(days=1))  # before `since`: not counted
    store.deployments.delete(gone.id)
    listing = list_models(store.engine, "", 0, 10, now - timedelta(hours=1))
    counted, empty = listing.models
    assert [d.name for d in counted.deployments] == [kept.name] and counted.requests == 7
    assert (empty.id, empty.deployments, empty.requests) == (other.id, (), 0)
