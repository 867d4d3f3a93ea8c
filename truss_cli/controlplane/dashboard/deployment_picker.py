"""The deployment picker the Logs and Metrics tabs share: each deployment of a model as an
option, labelled with its name and where it serves, and the one `deployment=` chose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from truss_cli.controlplane.store import Deployment, Model, Store


@dataclass(frozen=True)
class Choice:
    id: str
    label: str  # name, and where it serves


def label(deployment: Deployment) -> str:
    where = "production" if deployment.is_production else "development" if deployment.is_development \
        else deployment.environment
    return f"{deployment.name} ({where})" if where else deployment.name


def choices(deployments: Iterable[Deployment]) -> list[Choice]:
    return [Choice(d.id, label(d)) for d in deployments]


@dataclass(frozen=True)
class Picked:
    model: Model
    choices: list[Choice]
    chosen: Optional[Deployment]  # None: nothing to show by default, or `deployment=` named none
    asked: Optional[str]  # what `deployment=` said, when it named no deployment


def pick(store: Store, model_id: str, ref: Optional[str],
         default: Callable[[list[Deployment]], Optional[Deployment]]) -> Optional[Picked]:
    """None when no model has this id (links use ids: a name is not looked up). Without `ref`,
    `default` chooses among the model's deployments."""
    model = store.models.find(model_id)
    if model is None or model.id != model_id:
        return None
    deployments = store.deployments.list(model.id)
    if not ref:
        return Picked(model, choices(deployments), default(deployments), None)
    chosen = store.deployments.find(model.id, ref)
    return Picked(model, choices(deployments), chosen, None if chosen else ref)
