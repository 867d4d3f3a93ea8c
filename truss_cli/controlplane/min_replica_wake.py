"""Raising `min_replica` wakes a published deployment scaled to zero (docs/autoscaling.md).

The autoscaler keeps an ACTIVE deployment within [min_replica, max_replica], but a deployment
at zero is not ACTIVE: left alone it would sleep until a request or the wake route, although
the user just asked for replicas. So the routes that change autoscaling settings (a
deployment's own, an environment's) compare each deployment's effective `min_replica` before
and after the change, and ask the reconciler to wake the ones at zero whose floor rose above
0: the next tick moves them to WAKING_UP with `min_replica` replicas, then ACTIVE, exactly as a
request would (`reconciler._wake_up`).

Only a *raise* wakes: a deployment a promotion's SCALE_TO_ZERO cleanup put to sleep stays
asleep when someone changes another field, or when its floor was already above 0. Development
deployments have no settings of their own (one replica, the idle rule) and are never woken here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from truss_cli.controlplane.autoscaling_settings import effective
from truss_cli.controlplane.store import Store, states
from truss_cli.controlplane.store.errors import NotFound


def floors(store: Store) -> dict[str, int]:
    """deployment id -> its effective min_replica now (one read for every deployment)."""
    found = {}
    for deployment_id, (own, environment) in store.autoscaling.all_inputs().items():
        try:
            found[deployment_id] = effective(own, environment).min_replica
        except ValueError:  # unreadable stored settings: the reconciler runs it on the defaults
            found[deployment_id] = 0
    return found


def wake_raised(store: Store, before: Mapping[str, int], request_wake: Callable[..., None]) -> list[str]:
    """After a settings change (`before`: `floors` read before it): ask the next tick to wake
    every published deployment at zero, meant to be active, whose floor rose above 0
    (`request_wake(id, reason=...)`: `DevelopmentLifecycle.request_wake`, whose wake requests
    the tick takes). -> their ids. The caller ticks (the reconciler's `refresh`), so the
    WAKING_UP status is in the store before it answers."""
    woken = []
    for deployment_id, floor in floors(store).items():
        if floor <= max(0, before.get(deployment_id, 0)):
            continue
        try:
            deployment = store.deployments.get_by_id(deployment_id)
        except NotFound:  # deleted meanwhile
            continue
        if (deployment.is_development or deployment.status != states.SCALED_TO_ZERO
                or deployment.desired_state != states.DESIRED_ACTIVE):
            continue
        request_wake(deployment_id, reason=f"min_replica raised to {floor}")
        woken.append(deployment_id)
    return woken
