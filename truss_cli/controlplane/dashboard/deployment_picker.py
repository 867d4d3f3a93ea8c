"""The deployment picker the Logs and Metrics tabs share: each deployment of a model as an
option, labelled with its name and where it serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from truss_cli.controlplane.store import Deployment


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
