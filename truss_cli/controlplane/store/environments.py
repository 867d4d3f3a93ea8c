"""Environments: a model's named places a deployment serves from (`production` for every
model, `staging` and others by users), each with its own autoscaling and promotion settings.

The deployment an environment serves is `environments.current_deployment_id`. Older code (and
the unique index that lets only one deployment of a model be production) reads
`deployments.environment` and `deployments.is_production`; `set_current` changes all three in
one transaction, and the production flip of `Deployments.promote` goes through the same
function, so the two can never disagree. A deployment serves at most one environment: moving
it into another (staging -> production) takes it out of the one it served.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional

import sqlalchemy as sa
from pydantic import ValidationError

from truss_cli.controlplane import autoscaling_settings as scaling
from truss_cli.controlplane import promotion_settings as promotion
from truss_cli.controlplane.promotion_settings import CleanupStrategy
from truss_cli.controlplane.store import schema, states
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.names import follows_the_name_rule
from truss_cli.controlplane.store.errors import Conflict, NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.promotions import record_instant_in

t = schema.environments
d = schema.deployments
PRODUCTION = "production"
# Not an environment: the model's development deployment has its own target.
_NOT_ENVIRONMENTS = frozenset({"development"})
_UNSET: Any = object()


@dataclass(frozen=True)
class Environment:
    id: str
    model_id: str
    name: str
    current_deployment_id: Optional[str]
    autoscaling_settings: Optional[Mapping[str, Any]]
    promotion_settings: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PromotionRow:
    """An unfinished promotion as routing reads it (the promotions table is the rollout's)."""

    id: str
    environment_id: str
    candidate_deployment_id: str
    previous_deployment_id: Optional[str]
    percent_traffic_to_new_version: int
    kind: str
    status: str
    error_message: Optional[str]
    finished_at: Optional[datetime]


def check_name(name: str) -> str:
    """The deployment-name rule (letters, digits, '_', '-', '.'; at most 255)."""
    if not follows_the_name_rule(name):
        raise StoreError(f"invalid environment name {name!r}", hint="use letters, digits, '_', '-' and '.'",
                         code="INVALID_NAME")
    if name in _NOT_ENVIRONMENTS:
        raise StoreError(f"{name!r} cannot name an environment: it means the model's development deployment",
                         hint="choose another name, e.g. staging", code="INVALID_NAME")
    return name


def _checked_autoscaling(value: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    if value is None:
        return None
    try:
        return scaling.parse(value).model_dump(mode="json")
    except ValidationError as exc:
        raise StoreError(f"invalid autoscaling_settings: {_first_error(exc)}", code="INVALID_SETTINGS") from None


def _checked_promotion(value: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    try:
        return promotion.parse(value).model_dump(mode="json")
    except ValidationError as exc:
        raise StoreError(f"invalid promotion_settings: {_first_error(exc)}", code="INVALID_SETTINGS") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def insert_production(db: sa.Connection, model_id: str, current_deployment_id: Optional[str] = None) -> None:
    """The production environment of a new model (its own transaction's part)."""
    stamp = now()
    db.execute(t.insert().values(id=new_id(), model_id=model_id, name=PRODUCTION,
                                 current_deployment_id=current_deployment_id, autoscaling_settings=None,
                                 promotion_settings={}, created_at=stamp, updated_at=stamp))


def set_current_in(db: sa.Connection, model_id: str, name: str, deployment_id: Optional[str]) -> tuple[Environment, Optional[str]]:
    """Within the caller's transaction: `deployment_id` becomes what environment `name` serves
    (None: it serves nothing). Keeps deployments.environment / is_production equal to it.
    -> (the environment, the deployment it served before, None when none or the same)."""
    row = _locked(db, model_id, name)
    previous = row.current_deployment_id
    stamp = now()
    if deployment_id is not None:
        target = db.execute(sa.select(d.c.id, d.c.model_id, d.c.environment, d.c.is_production).where(d.c.id == deployment_id)
                            .with_for_update()).first()
        if target is None or target.model_id != model_id:
            raise NotFound("deployment", deployment_id)
        if (target.environment == PRODUCTION or target.is_production) and name != PRODUCTION:
            raise Conflict(f"deployment {deployment_id} serves production; production would serve nothing",
                           hint="promote another deployment into production first", code="NOT_PROMOTABLE")
        if target.environment is not None and target.environment != name:
            # It leaves the environment it served: a deployment serves one at a time.
            db.execute(t.update().where(t.c.model_id == model_id, t.c.name == target.environment)
                       .values(current_deployment_id=None, updated_at=stamp))
    if previous is not None and previous != deployment_id:
        # Demote first: the one-production index is checked row by row.
        db.execute(d.update().where(d.c.id == previous)
                   .values(environment=None, is_production=False, updated_at=stamp))
    if name == PRODUCTION:
        # Whatever else claims production (rows written before environments existed) yields.
        db.execute(d.update().where(d.c.model_id == model_id, d.c.is_production,
                                    d.c.id != (deployment_id or ""))
                   .values(is_production=False, environment=None, updated_at=stamp))
    if deployment_id is not None:
        db.execute(d.update().where(d.c.id == deployment_id)
                   .values(environment=name, is_production=(name == PRODUCTION), updated_at=stamp))
    updated = db.execute(t.update().where(t.c.id == row.id)
                         .values(current_deployment_id=deployment_id, updated_at=stamp).returning(*t.c)).first()
    return to_record(Environment, updated), (previous if previous != deployment_id else None)


@dataclass(frozen=True)
class Swap:
    """What a promotion changed: the environment, the deployment it served before (None: none,
    or the same) and what was done to that one."""

    environment: Environment
    previous_deployment_id: Optional[str]
    cleanup: Optional[CleanupStrategy]


def cleanup_for(strategy: CleanupStrategy, scale_down_previous: Optional[bool]) -> CleanupStrategy:
    """Baseten's `scale_down_previous_deployment`: None follows the environment's strategy,
    False keeps the previous deployment, True scales it down even when the strategy says KEEP."""
    if scale_down_previous is None:
        return strategy
    if not scale_down_previous:
        return CleanupStrategy.KEEP
    return CleanupStrategy.SCALE_TO_ZERO if strategy == CleanupStrategy.KEEP else strategy


def promote_in(db: sa.Connection, model_id: str, name: str, deployment_id: str,
               scale_down_previous: Optional[bool], recorded: bool = True) -> Swap:
    """Within the caller's transaction: an instant promotion. Refused while a promotion into the
    environment is under way; then `set_current_in`, and the previous deployment cleaned up:

        SCALE_TO_ZERO  desired replicas 0 (the autoscaler retires its replicas; a request wakes it)
        KEEP           left as it is
        DEACTIVATE     desired inactive, DEACTIVATING (the reconciler stops its replicas)

    A candidate an earlier promotion scaled to desired 0 gets 1 again: it serves now.
    `recorded`: a promotions row says so, finished (promotions.record_instant_in); False for
    production taken by the first in line, which nobody asked for (its log says it)."""
    p = schema.promotions
    environment_id = _locked(db, model_id, name).id
    under_way = db.execute(sa.select(p).where(p.c.environment_id == environment_id, p.c.finished_at.is_(None))).first()
    if under_way is not None:
        raise Conflict(f"promotion {under_way.id} of deployment {under_way.candidate_deployment_id} into {name} "
                       f"is {under_way.status}", hint="wait for it, or cancel it: truss rollout cancel",
                       code="PROMOTION_IN_PROGRESS")
    environment, previous = set_current_in(db, model_id, name, deployment_id)
    stamp = now()
    db.execute(d.update().where(d.c.id == deployment_id, d.c.desired_replicas == 0,
                                d.c.desired_state == states.DESIRED_ACTIVE)
               .values(desired_replicas=1, updated_at=stamp))
    if previous is None:
        if recorded:
            record_instant_in(db, model_id=model_id, environment_id=environment_id,
                              candidate_deployment_id=deployment_id, previous_deployment_id=None, cleanup=None)
        return Swap(environment, None, None)
    cleanup = cleanup_for(promotion.parse(environment.promotion_settings).promotion_cleanup_strategy,
                          scale_down_previous)
    if recorded:
        record_instant_in(db, model_id=model_id, environment_id=environment_id, candidate_deployment_id=deployment_id,
                          previous_deployment_id=previous, cleanup=cleanup.value)
    if cleanup == CleanupStrategy.SCALE_TO_ZERO:
        db.execute(d.update().where(d.c.id == previous).values(desired_replicas=0, updated_at=stamp))
    elif cleanup == CleanupStrategy.DEACTIVATE:
        # As Deployments.deactivate: it served, so it was built.
        db.execute(d.update().where(d.c.id == previous, d.c.desired_state == states.DESIRED_ACTIVE)
                   .values(desired_state=states.DESIRED_INACTIVE, status=states.DEACTIVATING, status_detail=None,
                           updated_at=stamp))
    return Swap(environment, previous, cleanup)


def _locked(db: sa.Connection, model_id: str, name: str) -> Any:
    row = db.execute(sa.select(t).where(t.c.model_id == model_id, t.c.name == name).with_for_update()).first()
    if row is None:
        _raise_not_found(db, model_id, name)
    return row


def _raise_not_found(db: sa.Connection, model_id: str, name: str) -> None:
    if db.execute(sa.select(schema.models.c.id).where(schema.models.c.id == model_id)).first() is None:
        raise NotFound("model", model_id)
    existing = db.execute(sa.select(t.c.name).where(t.c.model_id == model_id)).scalars()
    raise NotFound("environment", name, existing)


class Environments:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def list(self, model_id: str) -> list[Environment]:
        """The model's environments, production first, then by name."""
        with read_transaction(self._engine) as db:
            if db.execute(sa.select(schema.models.c.id).where(schema.models.c.id == model_id)).first() is None:
                raise NotFound("model", model_id)
            rows = db.execute(sa.select(t).where(t.c.model_id == model_id)
                              .order_by((t.c.name != PRODUCTION), t.c.name)).all()
        return [to_record(Environment, row) for row in rows]

    def list_all(self) -> list[Environment]:
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t).order_by(t.c.model_id, (t.c.name != PRODUCTION), t.c.name)).all()
        return [to_record(Environment, row) for row in rows]

    def get(self, model_id: str, name: str) -> Environment:
        """NotFound names the environments the model has."""
        with read_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.model_id == model_id, t.c.name == name)).first()
            if row is None:
                _raise_not_found(db, model_id, name)
        return to_record(Environment, row)

    def create(self, model_id: str, name: str, autoscaling_settings: Optional[Mapping[str, Any]] = None,
               promotion_settings: Optional[Mapping[str, Any]] = None) -> Environment:
        if name == PRODUCTION:
            raise Conflict("every model has a production environment; it cannot be created twice",
                           hint="change its settings instead: truss environments update", code="ENVIRONMENT_EXISTS")
        check_name(name)
        values = dict(id=new_id(), model_id=model_id, name=name, current_deployment_id=None,
                      autoscaling_settings=_checked_autoscaling(autoscaling_settings),
                      promotion_settings=_checked_promotion(promotion_settings), created_at=now())
        values["updated_at"] = values["created_at"]
        try:
            with write_transaction(self._engine) as db:
                if db.execute(sa.select(schema.models.c.id).where(schema.models.c.id == model_id)).first() is None:
                    raise NotFound("model", model_id)
                if db.execute(sa.select(t.c.id).where(t.c.model_id == model_id, t.c.name == name)).first():
                    raise Conflict(f"the model has an environment named {name!r}", hint="choose another name",
                                   code="ENVIRONMENT_EXISTS")
                db.execute(t.insert().values(**values))
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"an environment named {name!r} was created at the same time",
                           code="ENVIRONMENT_EXISTS") from exc
        return Environment(**values)  # type: ignore[arg-type]

    def update(self, model_id: str, name: str, *, autoscaling_settings: Any = _UNSET,
               promotion_settings: Any = _UNSET) -> tuple[Environment, bool]:
        """Partial updates of either settings object (a nested `rolling_deploy_config` too);
        `autoscaling_settings=None` goes back to each deployment's own. -> (it, changed)."""
        with write_transaction(self._engine) as db:
            row = _locked(db, model_id, name)
            values: dict[str, Any] = {}
            if autoscaling_settings is not _UNSET:
                if autoscaling_settings is None:
                    values["autoscaling_settings"] = None
                else:
                    try:
                        after, moved = scaling.updated(row.autoscaling_settings, autoscaling_settings)
                    except ValidationError as exc:
                        raise StoreError(f"invalid autoscaling_settings: {_first_error(exc)}",
                                         code="INVALID_SETTINGS") from None
                    if moved or row.autoscaling_settings is None:  # None -> the defaults, spelled out
                        values["autoscaling_settings"] = after.model_dump(mode="json")
            if promotion_settings is not _UNSET:
                try:
                    after_p, moved_p = promotion.updated(row.promotion_settings, promotion_settings or {})
                except ValidationError as exc:
                    raise StoreError(f"invalid promotion_settings: {_first_error(exc)}",
                                     code="INVALID_SETTINGS") from None
                if moved_p:
                    values["promotion_settings"] = after_p.model_dump(mode="json")
            changed = any(values[key] != getattr(row, key) for key in values)
            if not changed:
                return to_record(Environment, row), False
            updated = db.execute(t.update().where(t.c.id == row.id).values(updated_at=now(), **values)
                                 .returning(*t.c)).first()
        return to_record(Environment, updated), True

    def delete(self, model_id: str, name: str) -> Environment:
        """Delete an environment (never production); the deployment it served stays, in no
        environment, and its unfinished promotion goes with it."""
        with write_transaction(self._engine) as db:
            row = _locked(db, model_id, name)
            if name == PRODUCTION:
                raise Conflict("production cannot be deleted: every model has one",
                               hint="delete the model instead, or promote another deployment into production",
                               code="PRODUCTION_NOT_DELETABLE")
            if row.current_deployment_id is not None:
                db.execute(d.update().where(d.c.id == row.current_deployment_id)
                           .values(environment=None, updated_at=now()))
            db.execute(t.delete().where(t.c.id == row.id))
        return to_record(Environment, row)

    def set_current(self, model_id: str, name: str, deployment_id: Optional[str]) -> tuple[Environment, Optional[str]]:
        """`deployment_id` becomes what the environment serves, in one transaction.
        -> (the environment, the deployment it served before if another)."""
        with write_transaction(self._engine) as db:
            return set_current_in(db, model_id, name, deployment_id)

    def unfinished_promotions(self, model_id: Optional[str] = None) -> dict[str, PromotionRow]:
        """environment id -> its promotion under way (at most one: the database says so)."""
        p = schema.promotions
        query = sa.select(p).where(p.c.finished_at.is_(None))
        if model_id is not None:
            query = query.where(p.c.model_id == model_id)
        with read_transaction(self._engine) as db:
            rows = db.execute(query).all()
        return {row.environment_id: to_record(PromotionRow, row) for row in rows}
