"""begin_promotion and the instant swap (store.environments.promote_in) serialise on the
environment row, on SQLite and PostgreSQL: two promotions begun at once into one environment
leave one winner and a 409 naming it; a swap that lands while a rollout is being planned is
what the rollout rolls from."""

from __future__ import annotations

import threading

from promotion_support import put_environment
from store_support import backend, database_url, store  # noqa: F401 (fixtures)
from truss_cli.controlplane import rollouts
from truss_cli.controlplane.store import Conflict, Store, states
from truss_cli.controlplane.store.database import write_transaction
from truss_cli.controlplane.store.environments import promote_in

ROLLING = {"rolling_deploy": True,
           "rolling_deploy_config": {"max_surge_percent": 50, "stabilization_time_seconds": 30}}


def deployments(store: Store, count: int):
    model = store.models.create("hello")
    made = [store.deployments.create(model.id, config={}, status=states.ACTIVE, desired_replicas=1)
            for _ in range(count)]
    put_environment(store, model.id, "production", made[0].id, ROLLING)
    return model, made


def test_two_promotions_begun_at_once_leave_one_winner_and_a_conflict_naming_it(store: Store):
    model, (v1, v2, v3) = deployments(store, 3)
    barrier = threading.Barrier(2)
    won, refused = [], []

    def promote(candidate_id: str) -> None:
        barrier.wait()
        try:
            won.append(rollouts.begin_promotion(store, model.id, "production", candidate_id))
        except Conflict as exc:
            refused.append(exc)

    threads = [threading.Thread(target=promote, args=(d.id,)) for d in (v2, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 1
    assert refused[0].code == "PROMOTION_IN_PROGRESS"
    assert won[0].candidate_deployment_id in str(refused[0])
    assert won[0].previous_deployment_id == v1.id


def test_a_rollout_begun_while_an_instant_swap_commits_rolls_from_what_the_swap_left(store: Store):
    model, (v1, v2, v3) = deployments(store, 3)
    swapping, release = threading.Event(), threading.Event()

    def instant_swap() -> None:
        # An instant promotion of v2, its transaction held open while the rollout of v3 begins.
        with write_transaction(store.engine) as db:
            promote_in(db, model.id, "production", v2.id, None)
            swapping.set()
            release.wait(10)

    swap = threading.Thread(target=instant_swap)
    swap.start()
    assert swapping.wait(10)
    began: list = []
    rollout = threading.Thread(target=lambda: began.append(
        rollouts.begin_promotion(store, model.id, "production", v3.id)))
    rollout.start()
    rollout.join(0.5)  # let it read the environment (v1 still current to it) before the swap commits
    release.set()
    swap.join()
    rollout.join()
    assert len(began) == 1
    assert began[0].previous_deployment_id == v2.id  # not v1, which no longer serves production
    assert rollouts.promotions_of(store).environment(model.id, "production").current_deployment_id == v2.id
