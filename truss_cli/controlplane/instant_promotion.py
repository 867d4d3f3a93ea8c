"""A promotion of a deployment into an environment, as the API's routes start it.

An environment whose `promotion_settings` ask for a rolling or canary promotion (and that
serves a deployment to roll from) gets one: `rollouts.begin_promotion` records it and the
rollout driver moves it step by step. Otherwise the promotion is instant: the candidate
becomes the environment's current deployment at once, in one
transaction with the cleanup of the deployment it replaces (store/environments.py `promote_in`:
SCALE_TO_ZERO, KEEP or DEACTIVATE per `promotion_cleanup_strategy`, overridden by
`scale_down_previous`). Routing follows on the next tick, which the routes force. The deployment
keeps its build: promotion changes routing and lifecycle only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from truss_cli.controlplane import promotion_settings, rollouts
from truss_cli.controlplane.promotion_settings import CleanupStrategy, PromotionKind
from truss_cli.controlplane.store import Deployment, Store
from truss_cli.controlplane.store.environments import Environment
from truss_cli.controlplane.store.promotions import Promotion


@dataclass(frozen=True)
class Promoted:
    deployment: Deployment
    environment: Environment
    previous: Optional[Deployment]  # the deployment it replaced, after its cleanup
    cleanup: Optional[CleanupStrategy]  # what was done to `previous` (None: there was none)
    promotion: Optional[Promotion] = None  # a rolling or canary promotion begun (the rest then follows it)


def promote(store: Store, model_id: str, environment_name: str, deployment_id: str, *,
            scale_down_previous: Optional[bool] = None) -> Promoted:
    """Make `deployment_id` what the environment serves, now. Refused (409) while a promotion into
    the environment is under way, and for a deployment that cannot serve (development, inactive,
    failed: the store says how to fix each)."""
    environment = store.environments.get(model_id, environment_name)  # unknown -> NotFound naming the existing ones
    kind = promotion_settings.parse(environment.promotion_settings).kind
    if kind is not PromotionKind.INSTANT and environment.current_deployment_id not in (None, deployment_id):
        promotion = rollouts.begin_promotion(store, model_id, environment_name, deployment_id,
                                             scale_down_previous=scale_down_previous)
        return Promoted(store.deployments.get_by_id(deployment_id), store.environments.get(model_id, environment_name),
                        None, None, promotion)
    deployment, swap = store.deployments.promote_into(deployment_id, environment_name,
                                                      scale_down_previous=scale_down_previous)
    if swap is None:
        return Promoted(deployment, store.environments.get(model_id, environment_name), None, None)
    previous = None if swap.previous_deployment_id is None else store.deployments.get_by_id(swap.previous_deployment_id)
    return Promoted(deployment, swap.environment, previous, swap.cleanup)
