"""The `promotions` table (issue 11): one row per promotion of a deployment into an environment.

At most one unfinished row per environment (a partial unique index), so two concurrent
promote calls cannot both win: the loser gets PROMOTION_IN_PROGRESS naming the winner.

A row's `settings` JSON is the promotion's own: `plan` (rollout_machine.Plan's fields, fixed
when it begins), `cleanup` (the previous deployment's promotion_cleanup_strategy, or KEEP) and
`progress` (the machine's phase and its start, which the columns do not carry). Updates are
compare-and-set on `updated_at`, so a control written by the API between a tick's read and
its write is never lost: the tick's write fails and the next tick reads it.

An instant promotion (environments.promote_in) writes its row finished as it begins
(`record_instant_in`, in the swap's own transaction): SUCCEEDED, all the traffic on the
candidate. So an environment's last promotion, `truss rollout status` and the dashboard's
card show it as they show a rollout that ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

import sqlalchemy as sa

from truss_cli.controlplane import rollout_machine as machine
from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import Conflict, NotFound
from truss_cli.controlplane.store.ids import new_id

t = schema.promotions
env_t = schema.environments
dep_t = schema.deployments


class EnvironmentMoved(Exception):
    """The environment's current deployment changed since the promotion was planned (an
    instant swap landed in between): plan again from what serves it now."""


@dataclass(frozen=True)
class Promotion:
    id: str
    model_id: str
    environment_id: str
    candidate_deployment_id: str
    previous_deployment_id: Optional[str]
    kind: str
    status: str
    percent_traffic_to_new_version: int
    step: int
    requested_action: Optional[str]
    error_message: Optional[str]
    settings: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: Optional[datetime]


@dataclass(frozen=True)
class EnvironmentRow:
    """What a promotion reads of its environment (task A's store.environments owns the table)."""
    id: str
    model_id: str
    name: str
    current_deployment_id: Optional[str]
    promotion_settings: Mapping[str, Any]
    autoscaling_settings: Optional[Mapping[str, Any]]


class Promotions:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    # -- reads ------------------------------------------------------------------------------

    def environment(self, model_id: str, name: str) -> EnvironmentRow:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(env_t).where(env_t.c.model_id == model_id, env_t.c.name == name)).first()
            if row is None:
                names = db.execute(sa.select(env_t.c.name).where(env_t.c.model_id == model_id)).scalars().all()
                raise NotFound("environment", name, names)
        return to_record(EnvironmentRow, row)

    def environment_by_id(self, environment_id: str) -> EnvironmentRow:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(env_t).where(env_t.c.id == environment_id)).first()
        if row is None:
            raise NotFound("environment", environment_id)
        return to_record(EnvironmentRow, row)

    def deployment_autoscaling(self, deployment_id: str) -> Optional[Mapping[str, Any]]:
        """The deployment's own autoscaling_settings (task B's accessor owns their writes)."""
        with read_transaction(self._engine) as db:
            return db.execute(sa.select(dep_t.c.autoscaling_settings).where(dep_t.c.id == deployment_id)).scalar()

    def unfinished(self, environment_id: str) -> Optional[Promotion]:
        with read_transaction(self._engine) as db:
            row = db.execute(
                sa.select(t).where(t.c.environment_id == environment_id, t.c.finished_at.is_(None))
            ).first()
        return to_record(Promotion, row) if row is not None else None

    def latest(self, environment_id: str) -> Optional[Promotion]:
        """The unfinished promotion, else the last one (what `truss rollout status` shows)."""
        with read_transaction(self._engine) as db:
            row = db.execute(
                sa.select(t).where(t.c.environment_id == environment_id)
                .order_by(t.c.finished_at.is_not(None), t.c.created_at.desc()).limit(1)
            ).first()
        return to_record(Promotion, row) if row is not None else None

    def list_unfinished(self) -> list[Promotion]:
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t).where(t.c.finished_at.is_(None)).order_by(t.c.created_at)).all()
        return [to_record(Promotion, r) for r in rows]

    def get(self, promotion_id: str) -> Promotion:
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == promotion_id)).first()
        if row is None:
            raise NotFound("promotion", promotion_id)
        return to_record(Promotion, row)

    # -- writes -----------------------------------------------------------------------------

    def create(self, *, model_id: str, environment: EnvironmentRow, candidate_deployment_id: str,
               previous_deployment_id: Optional[str], kind: str, status: str, settings: Mapping[str, Any]) -> Promotion:
        stamp = now()
        values = dict(id=new_id(), model_id=model_id, environment_id=environment.id,
                      candidate_deployment_id=candidate_deployment_id, previous_deployment_id=previous_deployment_id,
                      kind=kind, status=status, percent_traffic_to_new_version=0, step=0, requested_action=None,
                      error_message=None, settings=dict(settings), created_at=stamp, updated_at=stamp, finished_at=None)
        try:
            with write_transaction(self._engine) as db:
                # The environment row's lock serialises this with an instant swap
                # (environments.promote_in takes it too): checked and inserted under it, no swap
                # can land between the check and the row, nor change what the plan rolls from.
                locked = db.execute(sa.select(env_t.c.current_deployment_id)
                                    .where(env_t.c.id == environment.id).with_for_update()).first()
                if locked is None:
                    raise NotFound("environment", environment.name)
                running = db.execute(sa.select(t).where(t.c.environment_id == environment.id,
                                                        t.c.finished_at.is_(None))).first()
                if running is not None:
                    raise in_progress(environment.name, to_record(Promotion, running))
                if locked.current_deployment_id != previous_deployment_id:
                    raise EnvironmentMoved(environment.name)
                row = db.execute(t.insert().values(**values).returning(*t.c)).first()
        except sa.exc.IntegrityError:
            running = self.unfinished(environment.id)
            if running is None:
                raise
            raise in_progress(environment.name, running) from None
        return to_record(Promotion, row)

    def save(self, promotion: Promotion, *, status: str, percent: int, step: int, requested_action: Optional[str],
             error_message: Optional[str], settings: Mapping[str, Any], finished: bool) -> Optional[Promotion]:
        """Write the promotion's next state if nobody wrote it since `promotion` was read; None
        when somebody did (read it again)."""
        stamp = now()
        if stamp <= promotion.updated_at:  # a coarse clock must still move updated_at on
            stamp = promotion.updated_at + timedelta(microseconds=1)
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update().where(t.c.id == promotion.id, t.c.updated_at == promotion.updated_at,
                                 t.c.finished_at.is_(None))
                .values(status=status, percent_traffic_to_new_version=percent, step=step,
                        requested_action=requested_action, error_message=error_message, settings=dict(settings),
                        updated_at=stamp, finished_at=stamp if finished else None)
                .returning(*t.c)
            ).first()
        return to_record(Promotion, row) if row is not None else None


def record_instant_in(db: sa.Connection, *, model_id: str, environment_id: str, candidate_deployment_id: str,
                      previous_deployment_id: Optional[str], cleanup: Optional[str]) -> None:
    """Within the caller's transaction (the instant swap's): the promotion's row, already over.
    Its settings have the shape a rollout's row has (`rollouts._settings`), so every reader of
    promotions reads it as one: an instant plan, at the step boundary, finished."""
    stamp = now()
    settings = {"plan": {"kind": "instant"}, "cleanup": cleanup,
                "progress": {"phase": machine.PHASE_BOUNDARY, "phase_since": stamp.timestamp(), "paused_status": None}}
    db.execute(t.insert().values(
        id=new_id(), model_id=model_id, environment_id=environment_id, candidate_deployment_id=candidate_deployment_id,
        previous_deployment_id=previous_deployment_id, kind="instant", status=machine.SUCCEEDED,
        percent_traffic_to_new_version=100, step=0, requested_action=None, error_message=None, settings=settings,
        created_at=stamp, updated_at=stamp, finished_at=stamp))


def in_progress(environment_name: str, running: Promotion) -> Conflict:
    return Conflict(
        f"environment {environment_name!r} already has a promotion in progress: deployment "
        f"{running.candidate_deployment_id} ({running.status}, {running.percent_traffic_to_new_version} %)",
        hint=f"wait for it, or: truss rollout cancel --environment {environment_name}",
        code="PROMOTION_IN_PROGRESS",
    )
