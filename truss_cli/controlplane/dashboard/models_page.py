"""The Models page's rows, a page at a time: each model, its production deployment (or the one
shown when none is in production yet), how many deployments it has, and its requests in the
last hour; with how many models match the search, so the page can say "N models" and offer
the other pages.

Fifty models a page: the page's cost is the page's rows (store/model_listing.py reads only
them), so the page stays well under 100 ms however many models there are (500 models read
whole took 119 ms p95; docs/performance.md).

Requests come from the usage table (store/usage.py), which keeps counts per deployment per
clock hour and is flushed by the reconciler every few seconds: "last hour" is the sum of the
hourly buckets that overlap the last 60 minutes, so it may include up to an hour more than
that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from truss_cli.controlplane.plane import ControlPlane
from truss_cli.controlplane.routes.views import status_label
from truss_cli.controlplane.store.model_listing import list_models

LAST_HOUR = timedelta(hours=1)
PAGE_SIZE = 50


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


@dataclass(frozen=True)
class ModelsPage:
    rows: list[ModelRow]
    matching: int  # models whose name contains the search, on all pages
    number: int  # this page, from 1
    pages: int  # at least 1, so "page 1 of 1" even with no models

    @property
    def exists(self) -> bool:
        return 1 <= self.number <= self.pages


def models_page(plane: ControlPlane, query: str = "", number: int = 1, size: int = PAGE_SIZE) -> ModelsPage:
    """Page `number` (from 1) of the models whose name contains `query` (case-insensitive), in
    the order they were made. A page past the last has no rows (`exists` is False)."""
    offset = (max(number, 1) - 1) * size
    listing = list_models(plane.store.engine, query, offset, size, datetime.now(timezone.utc) - LAST_HOUR)
    rows = []
    for model in listing.models:
        deployments = model.deployments
        production = next((d for d in deployments if d.is_production), None)
        shown = production or (max(deployments, key=lambda d: d.ordinal) if deployments else None)
        rows.append(ModelRow(
            id=model.id, name=model.name, description=model.description,
            deployment_name=shown.name if shown else None, in_production=production is not None,
            status=shown.status if shown else None, status_label=status_label(shown.status) if shown else None,
            deployments_count=len(deployments), requests_last_hour=model.requests,
        ))
    pages = max(1, -(-listing.matching // size))
    return ModelsPage(rows, listing.matching, number, pages)
