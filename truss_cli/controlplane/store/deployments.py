"""Deployments: one pushed version of a model, what it should be (desired) and what it is
(status)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from truss_cli.controlplane.store import schema, states
from truss_cli.controlplane.store._rows import now, one_line, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import Conflict, NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import Deployment

t = schema.deployments
PRODUCTION = "production"
DEVELOPMENT = "development"
# Truss's rule for --deployment-name.
NAME_PATTERN = re.compile(r"^[0-9a-zA-Z_\-\.]+$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Deployments:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def create(
        self,
        model_id: str,
        *,
        config: Mapping[str, Any],
        archive_sha256: str | None = None,
        name: str | None = None,
        labels: Mapping[str, Any] | None = None,
        desired_replicas: int = 1,
        is_development: bool = False,
        environment: str | None = None,
        status: str = states.BUILDING,
    ) -> Deployment:
        """A new deployment of `model_id`, named `name` or the next `deployment-N`.

        The first deployment of a model (other than a development one) becomes production.
        Two concurrent pushes get different N: the model's row is locked for the transaction on
        PostgreSQL, and SQLite runs one writer at a time; (model, ordinal) and (model, name)
        are unique besides, so a race could only fail, never share a name.
        """
        if name is not None and not NAME_PATTERN.match(name):
            raise StoreError(f"invalid deployment name {name!r}", hint="use letters, digits, '_', '-' and '.'")
        if archive_sha256 is not None and not _DIGEST.match(archive_sha256):
            raise StoreError(f"not a sha256 digest: {archive_sha256!r}")
        _check_status(status)
        if desired_replicas < 0:
            raise StoreError("desired_replicas cannot be negative")
        created = now()
        try:
            with write_transaction(self._engine) as db:
                model = db.execute(
                    sa.select(schema.models.c.id).where(schema.models.c.id == model_id).with_for_update()
                ).first()
                if model is None:
                    raise NotFound("model", model_id, db.execute(sa.select(schema.models.c.id)).scalars())
                taken = {
                    row.name: row
                    for row in db.execute(
                        sa.select(t.c.name, t.c.ordinal, t.c.is_production, t.c.is_development).where(
                            t.c.model_id == model_id
                        )
                    )
                }
                ordinal = max((row.ordinal for row in taken.values()), default=0) + 1
                if name is None:
                    # A user may have named an earlier deployment "deployment-7" by hand.
                    while f"deployment-{ordinal}" in taken:
                        ordinal += 1
                    name = f"deployment-{ordinal}"
                elif name in taken:
                    raise Conflict(f"model {model_id} has a deployment named {name!r}", hint="choose another name")
                if is_development and any(row.is_development for row in taken.values()):
                    raise Conflict(f"model {model_id} has a development deployment", hint="patch it instead")
                is_production = not is_development and not any(row.is_production for row in taken.values())
                values = dict(
                    id=new_id(),
                    model_id=model_id,
                    name=name,
                    ordinal=ordinal,
                    is_production=is_production,
                    is_development=is_development,
                    environment=environment,
                    status=status,
                    status_detail=None,
                    desired_replicas=desired_replicas,
                    desired_state=states.DESIRED_ACTIVE,
                    archive_sha256=archive_sha256,
                    build_artifact=None,
                    config=dict(config),
                    labels=dict(labels or {}),
                    created_at=created,
                    updated_at=created,
                )
                db.execute(t.insert().values(**values))
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"a deployment of model {model_id} was created at the same time; retry") from exc
        return Deployment(**values)  # type: ignore[arg-type]

    def find(self, model_id: str, ref: str) -> Deployment | None:
        """`ref` is a deployment id, `production`, `development` or a deployment name."""
        where = t.c.model_id == model_id
        with read_transaction(self._engine) as db:
            if ref == PRODUCTION:
                row = db.execute(sa.select(t).where(where, t.c.is_production)).first()
            elif ref == DEVELOPMENT:
                row = db.execute(sa.select(t).where(where, t.c.is_development)).first()
            else:
                row = db.execute(sa.select(t).where(where, t.c.id == ref)).first()
                if row is None:
                    row = db.execute(sa.select(t).where(where, t.c.name == ref)).first()
        return None if row is None else to_record(Deployment, row)

    def get(self, model_id: str, ref: str) -> Deployment:
        """Like find; a miss raises NotFound listing the model's deployments."""
        found = self.find(model_id, ref)
        if found is None:
            existing = [f"{d.name} ({d.id})" for d in self.list(model_id)]
            raise NotFound("deployment", ref if ref in (PRODUCTION, DEVELOPMENT) else ref, existing)
        return found

    def get_by_id(self, deployment_id: str) -> Deployment:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        if row is None:
            raise NotFound("deployment", deployment_id, (d.id for d in self.list()))
        return to_record(Deployment, row)

    def list(self, model_id: str | None = None) -> list[Deployment]:
        query = sa.select(t).order_by(t.c.model_id, t.c.ordinal)
        if model_id is not None:
            query = query.where(t.c.model_id == model_id)
        with read_transaction(self._engine) as db:
            return [to_record(Deployment, row) for row in db.execute(query)]

    def set_status(self, deployment_id: str, status: str, detail: str | None = None) -> Deployment:
        """Record what the deployment is now; `detail` is the cause, cut to one line."""
        _check_status(status)
        return self._update(deployment_id, status=status, status_detail=one_line(detail))

    def set_desired(
        self, deployment_id: str, *, replicas: int | None = None, state: str | None = None
    ) -> Deployment:
        values: dict[str, Any] = {}
        if replicas is not None:
            if replicas < 0:
                raise StoreError("desired replicas cannot be negative")
            values["desired_replicas"] = replicas
        if state is not None:
            if state not in states.DESIRED_STATES:
                raise StoreError(f"unknown desired state {state!r}")
            values["desired_state"] = state
        return self._update(deployment_id, **values)

    def set_build_artifact(self, deployment_id: str, artifact: Mapping[str, Any]) -> Deployment:
        return self._update(deployment_id, build_artifact=dict(artifact))

    def set_labels(self, deployment_id: str, labels: Mapping[str, Any]) -> Deployment:
        return self._update(deployment_id, labels=dict(labels))

    def promote(self, deployment_id: str) -> Deployment:
        """Make this deployment its model's production one, in one transaction."""
        with write_transaction(self._engine) as db:
            row = db.execute(sa.select(t.c.model_id).where(t.c.id == deployment_id).with_for_update()).first()
            if row is None:
                raise NotFound("deployment", deployment_id)
            stamp = now()
            # Demote first: the one-production index is checked row by row.
            db.execute(
                t.update()
                .where(t.c.model_id == row.model_id, t.c.is_production, t.c.id != deployment_id)
                .values(is_production=False, updated_at=stamp)
            )
            db.execute(t.update().where(t.c.id == deployment_id).values(is_production=True, updated_at=stamp))
        return self.get_by_id(deployment_id)

    def delete(self, deployment_id: str) -> Deployment:
        deployment = self.get_by_id(deployment_id)
        with write_transaction(self._engine) as db:
            db.execute(t.delete().where(t.c.id == deployment_id))
        return deployment

    def referenced_archives(self) -> set[str]:
        """The archive digests some deployment still points at (the blob sweep keeps these)."""
        with read_transaction(self._engine) as db:
            return set(db.execute(sa.select(t.c.archive_sha256).where(t.c.archive_sha256.is_not(None))).scalars())

    def _update(self, deployment_id: str, **values: Any) -> Deployment:
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update().where(t.c.id == deployment_id).values(updated_at=now(), **values).returning(*t.c)
            ).first()
        if row is None:
            raise NotFound("deployment", deployment_id)
        return to_record(Deployment, row)


def _check_status(status: str) -> None:
    if status not in states.DEPLOYMENT_STATUSES:
        raise StoreError(f"unknown deployment status {status!r}")
