"""Replicas: the processes or containers serving a deployment, with the handle a runtime needs
to find each one again after the control plane restarts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from truss_cli.controlplane.store import schema, states
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import Replica

t = schema.replicas


class Replicas:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def record(
        self, deployment_id: str, runtime: str, handle: Mapping[str, Any], phase: str = "starting"
    ) -> Replica:
        """Remember a replica a runtime just started. Call it as soon as start() returns: a
        replica without a row would be orphaned by a crash, one with a row is re-adopted."""
        _check_phase(phase)
        stamp = now()
        values = dict(
            id=new_id(),
            deployment_id=deployment_id,
            runtime=runtime,
            handle=dict(handle),
            phase=phase,
            started_at=stamp,
            restarts=0,
            updated_at=stamp,
        )
        try:
            with write_transaction(self._engine) as db:
                db.execute(t.insert().values(**values))
        except sa.exc.IntegrityError as exc:
            raise NotFound("deployment", deployment_id) from exc
        return Replica(**values)  # type: ignore[arg-type]

    def get(self, replica_id: str) -> Replica:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == replica_id)).first()
        if row is None:
            raise NotFound("replica", replica_id)
        return to_record(Replica, row)

    def list(self, deployment_id: str | None = None) -> list[Replica]:
        query = sa.select(t).order_by(t.c.deployment_id, t.c.started_at, t.c.id)
        if deployment_id is not None:
            query = query.where(t.c.deployment_id == deployment_id)
        with read_transaction(self._engine) as db:
            return [to_record(Replica, row) for row in db.execute(query)]

    def set_phase(self, replica_id: str, phase: str) -> Replica:
        _check_phase(phase)
        return self._update(replica_id, phase=phase)

    def restarted(self, replica_id: str, handle: Mapping[str, Any], phase: str = "starting") -> Replica:
        """The runtime replaced this replica's process: new handle, one more restart."""
        _check_phase(phase)
        stamp = now()
        return self._update(
            replica_id, handle=dict(handle), phase=phase, started_at=stamp, restarts=t.c.restarts + 1
        )

    def set_handle(self, replica_id: str, handle: Mapping[str, Any]) -> Replica:
        """The same replica, found again by a handle that now knows more (its url)."""
        return self._update(replica_id, handle=dict(handle))

    def remove(self, replica_id: str) -> None:
        with write_transaction(self._engine) as db:
            db.execute(t.delete().where(t.c.id == replica_id))

    def _update(self, replica_id: str, **values: Any) -> Replica:
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update().where(t.c.id == replica_id).values(updated_at=now(), **values).returning(*t.c)
            ).first()
        if row is None:
            raise NotFound("replica", replica_id)
        return to_record(Replica, row)


def _check_phase(phase: str) -> None:
    if phase not in states.REPLICA_PHASES:
        raise StoreError(f"unknown replica phase {phase!r}")
