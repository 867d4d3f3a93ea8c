"""An instant promotion of a deployment into an environment, as the API's routes start it.

Until the rollouts (controlplane/rollouts.py, `begin_promotion`) are merged, every promotion is
instant: the candidate becomes the environment's current deployment at once, in one
transaction with the cleanup of the deployment it replaces (store/environments.py `promote_in`:
SCALE_TO_ZERO, KEEP or DEACTIVATE per `promotion_cleanup_strategy`, overridden by
`scale_down_previous`). Routing follows on the next tick, which the routes force. The deployment
keeps its build: promotion changes routing and lifecycle only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from truss_cli.controlplane.promotion_settings import CleanupStrategy
from truss_cli.controlplane.store import Deployment, Store
from truss_cli.controlplane.store.environments import Environment


@dataclass(frozen=True)
class Promoted:
    deployment: Deployment
    environment: Environment
    previous: Optional[Deployment]  # the deployment it replaced, after its cleanup
    cleanup: Optional[CleanupStrategy]  # what was done to `previous` (None: there was none)


def promote(store: Store, model_id: str, environment_name: str, deployment_id: str, *,
            scale_down_previous: Optional[bool] = None) -> Promoted:
    """Make `deployment_id` what the environment serves, now. Refused (409) while a promotion into
    the environment is under way, and for a deployment that cannot serve (development, inactive,
    failed: the store says how to fix each)."""
    store.environments.get(model_id, environment_name)  # unknown -> NotFound naming the existing ones
    deployment, swap = store.deployments.promote_into(deployment_id, environment_name,
                                                      scale_down_previous=scale_down_previous)
    if swap is None:
        return Promoted(deployment, store.environments.get(model_id, environment_name), None, None)
    previous = None if swap.previous_deployment_id is None else store.deployments.get_by_id(swap.previous_deployment_id)
    return Promoted(deployment, swap.environment, previous, swap.cleanup)
