"""Usage: replica-seconds and requests per deployment per hour, kept after deployments go.

The reconciler counts in memory and adds its counts here every few seconds (`accrue`); a
deployment's or a model's delete marks its rows deleted in the delete's own transaction
(`mark_deleted`), so a deleted deployment is still in the listing, marked as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound
from truss_cli.controlplane.store.records import UsageAccrual, UsageTotal

t = schema.usage
d = schema.deployments
m = schema.models
HOUR = timedelta(hours=1)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class Usage:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def accrue(self, accruals: Iterable[UsageAccrual], at: datetime | None = None) -> None:
        """Add counts to each deployment's bucket of the hour `at` (default: now). A deployment
        deleted meanwhile keeps the names it had and is marked deleted."""
        accruals = [a for a in accruals if a.replica_seconds or a.requests]
        if not accruals:
            return
        stamp = at or now()
        hour = hour_of(stamp)
        with write_transaction(self._engine) as db:
            live = {
                row.id: row
                for row in db.execute(
                    sa.select(d.c.id, d.c.name, d.c.model_id, m.c.name.label("model_name"))
                    .join(m, m.c.id == d.c.model_id)
                    .where(d.c.id.in_([a.deployment_id for a in accruals]))
                )
            }
            for accrual in accruals:
                current = live.get(accrual.deployment_id)
                names = (
                    dict(model_id=current.model_id, model_name=current.model_name, deployment_name=current.name)
                    if current is not None
                    else dict(model_id=accrual.model_id, model_name=accrual.model_name,
                              deployment_name=accrual.deployment_name)
                )
                key = (t.c.deployment_id == accrual.deployment_id) & (t.c.hour == hour)
                found = db.execute(sa.select(t.c.deleted_at).where(key)).first()
                if found is None:
                    deleted_at = None if current is not None else _deleted_at(db, accrual.deployment_id, stamp)
                    db.execute(t.insert().values(
                        deployment_id=accrual.deployment_id, hour=hour, replica_seconds=accrual.replica_seconds,
                        requests=accrual.requests, deleted_at=deleted_at, **names,
                    ))
                else:
                    db.execute(t.update().where(key).values(
                        replica_seconds=t.c.replica_seconds + accrual.replica_seconds,
                        requests=t.c.requests + accrual.requests,
                        **(names if current is not None else {}),
                    ))

    def totals(self, model_ref: str | None = None, since: datetime | None = None) -> list[UsageTotal]:
        """Per deployment, the sums of the hours that overlap [since, now) (all when None):
        deleted deployments (marked) and existing ones (zero when they used nothing).
        `model_ref`: an id or name of a model, also of a deleted one."""
        with read_transaction(self._engine) as db:
            model_ids = None if model_ref is None else _model_ids(db, model_ref)
            query = sa.select(t).order_by(t.c.hour)
            existing = sa.select(d.c.id, d.c.name, d.c.model_id, m.c.name.label("model_name")).join(
                m, m.c.id == d.c.model_id
            ).order_by(m.c.created_at, d.c.ordinal)
            if model_ids is not None:
                query = query.where(t.c.model_id.in_(model_ids))
                existing = existing.where(d.c.model_id.in_(model_ids))
            if since is not None:
                query = query.where(t.c.hour > since - HOUR)
            rows = db.execute(query).all()
            deployments = db.execute(existing).all()
        totals: dict[str, dict[str, Any]] = {}
        for row in deployments:
            totals[row.id] = dict(model_id=row.model_id, model_name=row.model_name, deployment_id=row.id,
                                  deployment_name=row.name, replica_seconds=0.0, requests=0, deleted_at=None)
        live = set(totals)
        for row in rows:  # oldest hour first: the last names win
            total = totals.setdefault(row.deployment_id, dict(deployment_id=row.deployment_id, replica_seconds=0.0,
                                                              requests=0, deleted_at=None))
            if row.deployment_id not in live:
                total.update(model_id=row.model_id, model_name=row.model_name, deployment_name=row.deployment_name)
            total["replica_seconds"] += row.replica_seconds
            total["requests"] += row.requests
            if row.deleted_at is not None:
                total["deleted_at"] = max(filter(None, (total["deleted_at"], row.deleted_at)))
        return [UsageTotal(**total) for total in totals.values()]


def mark_deleted(db: sa.Connection, deployment_ids: Sequence[str], stamp: datetime) -> None:
    """Inside a delete's transaction, before the rows go: mark the deployments' usage deleted,
    giving one that never ran an empty row so it still appears."""
    if not deployment_ids:
        return
    db.execute(t.update().where(t.c.deployment_id.in_(deployment_ids), t.c.deleted_at.is_(None))
               .values(deleted_at=stamp))
    counted = set(db.execute(sa.select(t.c.deployment_id).where(t.c.deployment_id.in_(deployment_ids))).scalars())
    for row in db.execute(
        sa.select(d.c.id, d.c.name, d.c.model_id, m.c.name.label("model_name"))
        .join(m, m.c.id == d.c.model_id)
        .where(d.c.id.in_([i for i in deployment_ids if i not in counted]))
    ):
        db.execute(t.insert().values(
            deployment_id=row.id, hour=hour_of(stamp), model_id=row.model_id, model_name=row.model_name,
            deployment_name=row.name, replica_seconds=0.0, requests=0, deleted_at=stamp,
        ))


def rename(db: sa.Connection, deployment_id: str, name: str) -> None:
    """A renamed deployment's usage shows its new name (inside the rename's transaction)."""
    db.execute(t.update().where(t.c.deployment_id == deployment_id).values(deployment_name=name))


def _deleted_at(db: sa.Connection, deployment_id: str, fallback: datetime) -> datetime:
    stamps = [s for s in db.execute(sa.select(t.c.deleted_at).where(t.c.deployment_id == deployment_id)).scalars() if s]
    return max(stamps) if stamps else fallback


def _model_ids(db: sa.Connection, ref: str) -> set[str]:
    live = db.execute(sa.select(m.c.id).where((m.c.id == ref) | (m.c.name == ref))).scalars().all()
    if live:
        return set(live)
    gone = set(db.execute(sa.select(t.c.model_id).where((t.c.model_id == ref) | (t.c.model_name == ref))).scalars())
    if gone:
        return gone
    names = {f"{row.name} ({row.id})" for row in db.execute(sa.select(m.c.id, m.c.name))}
    names |= {f"{row.model_name} ({row.model_id})" for row in db.execute(sa.select(t.c.model_id, t.c.model_name))}
    raise NotFound("model", ref, names)
