"""An instant promotion of a deployment into an environment, and the cleanup of the deployment
it replaces (`promotion_settings.promotion_cleanup_strategy`).

Until the rollouts (controlplane/rollouts.py, `begin_promotion`) are merged, every promotion
the API starts is instant: the candidate becomes the environment's current deployment at once
(routing follows on the next tick, which the route forces). The swap changes routing and
lifecycle only: the deployment keeps its build. The previous deployment is then:

    KEEP           left as it is (still serving its own deployment/{id} URL)
    SCALE_TO_ZERO  desired replicas 0 (the autoscaler, once merged, retires its replicas and a
                   request wakes it like any deployment at zero)
    DEACTIVATE     deactivated (its replicas stop; `truss deployments activate` brings it back)

`scale_down_previous`: None follows the strategy; False keeps it; True scales it down even when
the strategy says KEEP (Baseten's `scale_down_previous_deployment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from truss_cli.controlplane import promotion_settings
from truss_cli.controlplane.promotion_settings import CleanupStrategy
from truss_cli.controlplane.store import Conflict, Deployment, Store, states
from truss_cli.controlplane.store.environments import Environment


@dataclass(frozen=True)
class Promoted:
    deployment: Deployment
    environment: Environment
    previous: Optional[Deployment]  # the deployment it replaced, after its cleanup
    cleanup: Optional[CleanupStrategy]  # what was done to `previous` (None: there was none)


def cleanup_for(strategy: CleanupStrategy, scale_down_previous: Optional[bool]) -> CleanupStrategy:
    if scale_down_previous is None:
        return strategy
    if not scale_down_previous:
        return CleanupStrategy.KEEP
    return CleanupStrategy.SCALE_TO_ZERO if strategy == CleanupStrategy.KEEP else strategy


def promote(store: Store, model_id: str, environment_name: str, deployment_id: str, *,
            scale_down_previous: Optional[bool] = None) -> Promoted:
    """Make `deployment_id` what the environment serves, now, and clean up the one it replaces.
    Refused (409) while a promotion into the environment is under way, and for a deployment
    that cannot serve (development, inactive, failed: the store says how to fix each)."""
    environment = store.environments.get(model_id, environment_name)
    under_way = store.environments.unfinished_promotions(model_id).get(environment.id)
    if under_way is not None:
        raise Conflict(f"promotion {under_way.id} of deployment {under_way.candidate_deployment_id} into "
                       f"{environment_name} is {under_way.status}",
                       hint="wait for it, or cancel it: truss rollout cancel", code="PROMOTION_IN_PROGRESS")
    before = environment.current_deployment_id
    promoted = store.deployments.promote(deployment_id, environment_name)
    if promoted.desired_replicas == 0 and promoted.desired_state == states.DESIRED_ACTIVE:
        # Scaled down by an earlier promotion away from it: it serves again.
        promoted = store.deployments.set_desired(promoted.id, replicas=1)
    environment = store.environments.get(model_id, environment_name)
    if before is None or before == deployment_id:
        return Promoted(promoted, environment, None, None)
    cleanup = cleanup_for(promotion_settings.parse(environment.promotion_settings).promotion_cleanup_strategy,
                          scale_down_previous)
    previous = store.deployments.get_by_id(before)
    if cleanup == CleanupStrategy.SCALE_TO_ZERO:
        previous = store.deployments.set_desired(before, replicas=0)
    elif cleanup == CleanupStrategy.DEACTIVATE and previous.desired_state != states.DESIRED_INACTIVE:
        previous = store.deployments.deactivate(before)
    return Promoted(promoted, environment, previous, cleanup)
