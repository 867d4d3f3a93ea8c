"""The Models page's rows: each model, its production deployment (or the one shown when none
is in production yet), how many deployments it has, and its requests in the last hour.

Requests come from the usage table (store/usage.py), which keeps counts per deployment per
clock hour and is flushed by the reconciler every few seconds: "last hour" is the sum of the
hourly buckets that overlap the last 60 minutes, so it may include up to an hour more than
that. It is a cheap read, one query, whatever the number of models.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import status_label
from truss_cli.controlplane.store import Deployment


LAST_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    description: str
    deployment_name: Optional[str]
    in_production: bool
    status: Optional[str]  # the store's word, for the badge's colour
    status_label: Optional[str]  # Baseten's word, what the badge says
    deployments_count: int
    requests_last_hour: int


def model_rows(plane: ControlPlane, query: str = "") -> list[ModelRow]:
    """Every model whose name contains `query` (case-insensitive), in the order they were made."""
    store = plane.store
    needle = query.strip().lower()
    models = [m for m in store.models.list() if needle in m.name.lower()]
    by_model: defaultdict[str, list[Deployment]] = defaultdict(list)
    for deployment in store.deployments.list():
        by_model[deployment.model_id].append(deployment)
    requests: defaultdict[str, int] = defaultdict(int)
    for total in store.usage.totals(since=datetime.now(timezone.utc) - LAST_HOUR):
        if total.deleted_at is None:
            requests[total.model_id] += total.requests
    rows = []
    for model in models:
        deployments = by_model[model.id]
        production = next((d for d in deployments if d.is_production), None)
        shown = production or (max(deployments, key=lambda d: d.ordinal) if deployments else None)
        rows.append(ModelRow(
            id=model.id, name=model.name, description=model.description,
            deployment_name=shown.name if shown else None, in_production=production is not None,
            status=shown.status if shown else None, status_label=status_label(shown.status) if shown else None,
            deployments_count=len(deployments), requests_last_hour=requests[model.id],
        ))
    return rows
