"""Where a deployment's autoscaling settings are kept: `deployments.autoscaling_settings`
(JSON in Baseten's field names, null = the defaults) and, for the deployment an environment
serves, `environments.autoscaling_settings` (null = the deployment's own).

Plain JSON objects in and out: `controlplane/autoscaling_settings.py` validates and merges
them (`updated`, `effective`); the store only keeps them, each call one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound

Json = Optional[Mapping[str, Any]]


class AutoscalingSettingsStore:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def get(self, deployment_id: str) -> Json:
        """The deployment's own settings (None: the defaults)."""
        t = schema.deployments
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t.c.autoscaling_settings).where(t.c.id == deployment_id)).first()
        if row is None:
            raise NotFound("deployment", deployment_id, ())
        return row.autoscaling_settings

    def set(self, deployment_id: str, settings: Json) -> None:
        """Replace the deployment's own settings (a whole object: merging is the caller's)."""
        t = schema.deployments
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(autoscaling_settings=None if settings is None else dict(settings), updated_at=now())
            ).rowcount
        if changed != 1:
            raise NotFound("deployment", deployment_id, ())

    def all_inputs(self) -> dict[str, tuple[Json, Json]]:
        """deployment id -> (its own settings, those of the environment serving it, if any):
        what `autoscaling_settings.effective` takes, for every deployment in one read."""
        d, e = schema.deployments, schema.environments
        query = sa.select(d.c.id, d.c.autoscaling_settings, e.c.autoscaling_settings.label("environment_settings")) \
            .select_from(d.outerjoin(e, e.c.current_deployment_id == d.c.id))
        with read_transaction(self._engine) as db:
            rows = db.execute(query).all()
        found: dict[str, tuple[Json, Json]] = {}
        for row in rows:
            own, environment = found.get(row.id, (row.autoscaling_settings, None))
            found[row.id] = (own, environment if environment is not None else row.environment_settings)
        return found
