"""Builds: a queue that survives the control plane, taken by a bounded pool of workers.

A build's end and its deployment's status change in one transaction, so a crash cannot leave
a finished build under a deployment still BUILDING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from truss_cli.controlplane.store import schema, states
from truss_cli.controlplane.store._rows import now, one_line, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import Conflict, NotFound
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.records import Build

t = schema.builds
d = schema.deployments


class Builds:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def queue(self, deployment_id: str, log_path: str | None = None) -> Build:
        """Queue a build of the deployment and mark it BUILDING."""
        with write_transaction(self._engine) as db:
            return queue_build(db, deployment_id, log_path)

    def retry(self, deployment_id: str) -> Build:
        """Build a failed deployment again from its stored tree (BUILD_FAILED, or DEPLOY_FAILED:
        rebuilt too, so a cause in the environment or image is not started again as it was)."""
        with write_transaction(self._engine) as db:
            row = db.execute(sa.select(d.c.name, d.c.status).where(d.c.id == deployment_id).with_for_update()).first()
            if row is None:
                raise NotFound("deployment", deployment_id)
            if row.status not in (states.BUILD_FAILED, states.DEPLOY_FAILED):
                raise Conflict(f"deployment {row.name} ({deployment_id}) is {row.status}, not failed",
                               hint="only a BUILD_FAILED or DEPLOY_FAILED deployment is retried", code="NOT_RETRYABLE")
            db.execute(d.update().where(d.c.id == deployment_id).values(desired_state=states.DESIRED_ACTIVE))
            return queue_build(db, deployment_id, None)

    def claim(self) -> Build | None:
        """Take the oldest queued build for this worker, or None when the queue is empty.

        A compare-and-set (UPDATE ... WHERE state = 'queued'), so two workers, threads or
        processes never take the same build: on PostgreSQL the loser's UPDATE waits for the
        winner's row lock, then matches nothing; SQLite runs one writer at a time.
        """
        while True:
            with write_transaction(self._engine) as db:
                candidate = db.execute(
                    sa.select(t.c.id).where(t.c.state == states.BUILD_QUEUED).order_by(t.c.queued_at, t.c.id).limit(1)
                ).scalar()
                if candidate is None:
                    return None
                row = db.execute(
                    t.update()
                    .where(t.c.id == candidate, t.c.state == states.BUILD_QUEUED)
                    .values(state=states.BUILD_RUNNING, started_at=now(), finished_at=None, attempts=t.c.attempts + 1)
                    .returning(*t.c)
                ).first()
            if row is not None:
                return to_record(Build, row)
            # Another worker took it between our SELECT and UPDATE: look again.

    def set_log_path(self, build_id: str, log_path: str) -> Build:
        with write_transaction(self._engine) as db:
            row = db.execute(t.update().where(t.c.id == build_id).values(log_path=log_path).returning(*t.c)).first()
        if row is None:
            raise NotFound("build", build_id)
        return to_record(Build, row)

    def finish(
        self,
        build_id: str,
        *,
        succeeded: bool,
        cause: str | None = None,
        artifact: Mapping[str, Any] | None = None,
    ) -> Build:
        """End a running build. Success stores the runtime's artifact on the deployment and
        moves it to DEPLOYING; failure marks it BUILD_FAILED with the cause's first line."""
        stamp = now()
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update()
                .where(t.c.id == build_id, t.c.state == states.BUILD_RUNNING)
                .values(
                    state=states.BUILD_SUCCEEDED if succeeded else states.BUILD_FAILED_STATE,
                    cause=None if succeeded else one_line(cause),
                    finished_at=stamp,
                )
                .returning(*t.c)
            ).first()
            if row is None:
                raise Conflict(f"build {build_id} is not running (unknown, not claimed, or finished)")
            if _superseded(db, row):
                # The deployment was given another tree meanwhile (a development push): this
                # build's artifact is for the old one and must not start; the newer build decides.
                return to_record(Build, row)
            deployment: dict[str, Any] = {"updated_at": stamp}
            if succeeded:
                deployment.update(status=states.DEPLOYING, status_detail=None, build_artifact=dict(artifact or {}))
            else:
                deployment.update(status=states.BUILD_FAILED, status_detail=one_line(cause))
            db.execute(d.update().where(d.c.id == row.deployment_id).values(**deployment))
        return to_record(Build, row)

    def requeue_interrupted(self) -> list[Build]:
        """Put builds left `running` back in the queue. Call once at start, before any worker
        runs: one control plane owns a database, so a running build then is one whose worker
        died with the previous control plane."""
        with write_transaction(self._engine) as db:
            rows = db.execute(
                t.update()
                .where(t.c.state == states.BUILD_RUNNING)
                .values(state=states.BUILD_QUEUED, started_at=None)
                .returning(*t.c)
            ).all()
        return [to_record(Build, row) for row in rows]

    def get(self, build_id: str) -> Build:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == build_id)).first()
        if row is None:
            raise NotFound("build", build_id)
        return to_record(Build, row)

    def list(self, deployment_id: str | None = None, state: str | None = None) -> list[Build]:
        query = sa.select(t).order_by(t.c.queued_at, t.c.id)
        if deployment_id is not None:
            query = query.where(t.c.deployment_id == deployment_id)
        if state is not None:
            query = query.where(t.c.state == state)
        with read_transaction(self._engine) as db:
            return [to_record(Build, row) for row in db.execute(query)]

    def latest(self, deployment_id: str) -> Build | None:
        builds = self.list(deployment_id)
        return builds[-1] if builds else None


def queue_build(db: sa.Connection, deployment_id: str, log_path: str | None) -> Build:
    stamp = now()
    values = dict(
        id=new_id(), deployment_id=deployment_id, state=states.BUILD_QUEUED, log_path=log_path, cause=None,
        attempts=0, queued_at=stamp, started_at=None, finished_at=None,
    )
    updated = db.execute(
        d.update().where(d.c.id == deployment_id).values(status=states.BUILDING, status_detail=None, updated_at=stamp)
    )
    if updated.rowcount != 1:
        raise NotFound("deployment", deployment_id)
    db.execute(t.insert().values(**values))
    return Build(**values)  # type: ignore[arg-type]


def _superseded(db: sa.Connection, build: Any) -> bool:
    """A build of the same deployment was queued after this one (claim's order: queued_at, id)."""
    newer = db.execute(
        sa.select(t.c.id).where(
            t.c.deployment_id == build.deployment_id,
            sa.or_(t.c.queued_at > build.queued_at, sa.and_(t.c.queued_at == build.queued_at, t.c.id > build.id)),
        ).limit(1)
    ).first()
    return newer is not None
