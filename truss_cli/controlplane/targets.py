"""What the gateway routes each model's targets to, built from rows (pure: rows in, targets out).

    deployment/{id}      -> that deployment
    development          -> the model's development deployment
    environments/{name}  -> the environment's split (traffic.environment_split): its current
                            deployment, or candidate and previous while a promotion is under way
    production           -> the same as environments/production

While production serves nothing, its target is the deployment first in line to take it
(`store.deployments.takes_production`: the oldest pushed without an environment or with
--promote, neither failed nor inactive): requests wait for it to start,
as they do for any starting deployment, instead of a 404 in the moment between it becoming
ACTIVE and the next routing table. An environment that serves nothing yet has an empty split: the gateway answers it with a
404 ENVIRONMENT_EMPTY saying how to fill it (an unknown name gets the list of those that exist). A model whose production environment row is missing (a store
written before environments existed and not migrated) falls back to `is_production`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from truss_cli.controlplane.store.deployments import takes_production

from truss_cli.controlplane.traffic import environment_split

PRODUCTION = "production"
Split = list[tuple[str, float]]


class DeploymentRow(Protocol):
    id: str
    model_id: str
    is_production: bool
    is_development: bool
    status: str
    desired_state: str
    config: Mapping[str, Any]


class EnvironmentRow(Protocol):
    id: str
    model_id: str
    name: str
    current_deployment_id: str | None


class PromotionRow(Protocol):
    candidate_deployment_id: str
    previous_deployment_id: str | None
    percent_traffic_to_new_version: int
    finished_at: object


def build_targets(model_ids: Iterable[str], deployments: Iterable[DeploymentRow],
                  environments: Iterable[EnvironmentRow],
                  promotions: Mapping[str, PromotionRow]) -> dict[str, dict[str, Split]]:
    """model id -> {target -> [(deployment id, weight)]}. `promotions`: environment id -> its
    promotion (finished ones are ignored: the environment's current deployment has taken over)."""
    targets: dict[str, dict[str, Split]] = {model_id: {} for model_id in model_ids}
    deployments = list(deployments)
    claimants: dict[str, str] = {}  # model id -> the deployment that takes production once ACTIVE
    for deployment in deployments:
        if deployment.model_id not in claimants and takes_production(deployment):
            claimants[deployment.model_id] = deployment.id
    for deployment in deployments:
        model = targets.get(deployment.model_id)
        if model is None:
            continue
        model[f"deployment/{deployment.id}"] = [(deployment.id, 1.0)]
        if deployment.is_development:
            model["development"] = [(deployment.id, 1.0)]
        elif deployment.is_production:
            model[PRODUCTION] = [(deployment.id, 1.0)]  # replaced below by the environment's split
    for environment in environments:
        model = targets.get(environment.model_id)
        if model is None:
            continue
        split = _split(environment, promotions.get(environment.id))
        name = f"environments/{environment.name}"
        model[name] = split
        if environment.name == PRODUCTION:
            claimant = claimants.get(environment.model_id)
            if not split and claimant is not None:
                split = model[name] = [(claimant, 1.0)]
            model[PRODUCTION] = split  # empty when its row serves nothing, whatever a flag says
    return targets


def _split(environment: EnvironmentRow, promotion: PromotionRow | None) -> Split:
    if promotion is None or promotion.finished_at is not None:
        return environment_split(environment.current_deployment_id)
    return environment_split(environment.current_deployment_id, promotion.candidate_deployment_id,
                             promotion.previous_deployment_id, promotion.percent_traffic_to_new_version)
