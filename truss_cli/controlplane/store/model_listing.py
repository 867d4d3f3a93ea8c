"""One page of the dashboard's Models list in four indexed reads, whatever the number of models:
how many models match a name search, the page's models (in the order they were made), the few
columns of their deployments the list shows, and their requests since a time.

Reading every model and deployment (their full rows: configs, READMEs) to show fifty cost
~100 ms at 500 models; this reads only the page's rows and columns (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store.database import read_transaction
from truss_cli.controlplane.store.usage import HOUR

m = schema.models
d = schema.deployments
u = schema.usage


@dataclass(frozen=True)
class ListedDeployment:
    name: str
    status: str
    is_production: bool
    ordinal: int


@dataclass(frozen=True)
class ListedModel:
    id: str
    name: str
    description: str
    deployments: tuple[ListedDeployment, ...]  # in push order
    requests: int  # summed over the usage hours that overlap [since, now), deleted deployments' not


@dataclass(frozen=True)
class ModelListing:
    matching: int  # models whose name contains the search, on every page
    models: list[ListedModel]


def _matching(query: str) -> sa.ColumnElement[bool]:
    # Model names are ASCII (models.NAME_PATTERN), so SQL's lower() agrees with Python's on
    # both databases; autoescape keeps `_` and `%` in a search literal.
    needle = query.strip().lower()
    return sa.true() if not needle else sa.func.lower(m.c.name).contains(needle, autoescape=True)


def list_models(engine: sa.Engine, query: str, offset: int, limit: int, since: datetime) -> ModelListing:
    """The models whose name contains `query` (case-insensitive), `limit` of them from `offset`."""
    where = _matching(query)
    with read_transaction(engine) as db:
        matching = db.execute(sa.select(sa.func.count()).select_from(m).where(where)).scalar_one()
        page = db.execute(sa.select(m.c.id, m.c.name, m.c.description).where(where)
                          .order_by(m.c.created_at, m.c.name).offset(offset).limit(limit)).all()
        ids = [row.id for row in page]
        deployments: dict[str, list[ListedDeployment]] = {model_id: [] for model_id in ids}
        requests: dict[str, int] = {}
        if ids:
            for row in db.execute(sa.select(d.c.model_id, d.c.name, d.c.status, d.c.is_production, d.c.ordinal)
                                  .where(d.c.model_id.in_(ids)).order_by(d.c.model_id, d.c.ordinal)):
                deployments[row.model_id].append(ListedDeployment(row.name, row.status, bool(row.is_production),
                                                                  row.ordinal))
            requests = dict(db.execute(
                sa.select(u.c.model_id, sa.func.coalesce(sa.func.sum(u.c.requests), 0))
                .where(u.c.model_id.in_(ids), u.c.hour > since - HOUR, u.c.deleted_at.is_(None))
                .group_by(u.c.model_id)).all())
    return ModelListing(matching, [
        ListedModel(row.id, row.name, row.description or "", tuple(deployments[row.id]), int(requests.get(row.id, 0)))
        for row in page
    ])
