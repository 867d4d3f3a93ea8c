"""Deployments: one pushed version of a model, what it should be (desired) and what it is
(status), and the changes users make to them (rename, deactivate, activate, promote, delete,
prune), each one transaction that checks its rule against the rows it changes."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from truss_cli.controlplane.store import schema, states, versions
from truss_cli.controlplane.store._rows import now, one_line, to_record
from truss_cli.controlplane.store.builds import queue_build
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.environments import Swap, promote_in
from truss_cli.controlplane.store.errors import Conflict, NotFound, StoreError
from truss_cli.controlplane.store.ids import new_id
from truss_cli.controlplane.store.names import follows_the_name_rule
from truss_cli.controlplane.store.records import Deployment, Removed, Replica
from truss_cli.controlplane.store.usage import mark_deleted
from truss_cli.controlplane.store.usage import rename as rename_usage

t = schema.deployments
PRODUCTION = "production"
DEVELOPMENT = "development"
# Words a deployment reference already means: a deployment named so could never be named back.
RESERVED_NAMES = frozenset({PRODUCTION, DEVELOPMENT})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# A deployment that never built has nothing to run: deactivating it would mean nothing.
_UNBUILT = frozenset({states.BUILDING, states.BUILD_FAILED})
_FAILED = frozenset({states.BUILD_FAILED, states.DEPLOY_FAILED})
_FROM_CONFIG: Any = object()  # promote's scale_down_previous when the caller leaves it to the row


def check_name(name: str) -> str:
    if not follows_the_name_rule(name):
        raise StoreError(f"invalid deployment name {name!r}", hint="use letters, digits, '_', '-' and '.'",
                         code="INVALID_NAME")
    if name in RESERVED_NAMES:
        raise StoreError(f"{name!r} cannot name a deployment: it already means the model's {name} deployment",
                         hint="choose another name", code="INVALID_NAME")
    return name


def _command(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)


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
        version_bump: str = versions.MINOR,
        first_becomes_production: bool = True,
    ) -> Deployment:
        """A new deployment of `model_id`, named `name` or the next `deployment-N` (N never
        repeats, deleted deployments included; the development deployment is always
        `development`), versioned as a `version_bump` of the
        model's highest version so far (0.1.0 first; none for the development one).

        The first deployment of a model (other than a development one) becomes production,
        unless `first_becomes_production` is False: the push routes pass False, and their
        deployments take an empty production once ACTIVE (`become_active`), so a first
        deployment that fails never serves production.
        Two concurrent pushes get different N and versions: the model's row is locked for the
        transaction on PostgreSQL, and SQLite runs one writer at a time; (model, ordinal) and
        (model, name) are unique besides, so a race could only fail, never share a name.
        """
        if is_development:
            name = DEVELOPMENT
        elif name is not None:
            check_name(name)
        versions.check_bump(version_bump)
        if archive_sha256 is not None and not _DIGEST.match(archive_sha256):
            raise StoreError(f"not a sha256 digest: {archive_sha256!r}")
        _check_status(status)
        if desired_replicas < 0:
            raise StoreError("desired replicas cannot be negative")
        created = now()
        models = schema.models
        try:
            with write_transaction(self._engine) as db:
                model = db.execute(
                    sa.select(models.c.id, models.c.last_version, models.c.last_ordinal)
                    .where(models.c.id == model_id).with_for_update()
                ).first()
                if model is None:
                    raise NotFound("model", model_id, db.execute(sa.select(models.c.id)).scalars())
                taken = {
                    row.name: row
                    for row in db.execute(
                        sa.select(t.c.name, t.c.ordinal, t.c.is_production, t.c.is_development).where(
                            t.c.model_id == model_id
                        )
                    )
                }
                # Deleted deployments' numbers included: a name never means two deployments.
                ordinal = max([model.last_ordinal or 0, *(row.ordinal for row in taken.values())]) + 1
                if is_development and any(row.is_development for row in taken.values()):
                    raise Conflict(f"model {model_id} has a development deployment", hint="patch it instead")
                if name is None:
                    # A user may have named an earlier deployment "deployment-7" by hand.
                    while f"deployment-{ordinal}" in taken:
                        ordinal += 1
                    name = f"deployment-{ordinal}"
                elif name in taken:
                    raise Conflict(f"model {model_id} has a deployment named {name!r}", hint="choose another name",
                                   code="NAME_TAKEN")
                db.execute(models.update().where(models.c.id == model_id).values(last_ordinal=ordinal))
                version = None
                if not is_development:
                    version = versions.next_version(model.last_version, version_bump)
                    db.execute(models.update().where(models.c.id == model_id).values(last_version=version))
                is_production = (first_becomes_production and not is_development
                                 and not any(row.is_production for row in taken.values()))
                if is_production:
                    environment = PRODUCTION
                values = dict(
                    id=new_id(),
                    model_id=model_id,
                    name=name,
                    ordinal=ordinal,
                    version=version,
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
                if is_production:
                    # The production environment serves its model's first published deployment.
                    env = schema.environments
                    db.execute(env.update().where(env.c.model_id == model_id, env.c.name == PRODUCTION)
                               .values(current_deployment_id=values["id"], updated_at=created))
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
            raise NotFound("deployment", ref, existing)
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

    # -- what the control plane records ---------------------------------------------------

    def set_status(self, deployment_id: str, status: str, detail: str | None = None) -> Deployment:
        """Record what the deployment is now; `detail` is the cause, cut to one line."""
        _check_status(status)
        return self._update(deployment_id, status=status, status_detail=one_line(detail))

    def become_active(self, deployment_id: str) -> Deployment:
        """ACTIVE, and what production serves too when it is production's next in line
        (`_claim_production`). One transaction, so nobody reads it ACTIVE but not yet production."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            db.execute(t.update().where(t.c.id == deployment_id)
                       .values(status=states.ACTIVE, status_detail=None, updated_at=now()))
            _claim_production(db, row)
            updated = db.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        return to_record(Deployment, updated)

    def claim_production(self, deployment_id: str) -> bool:
        """An ACTIVE deployment takes an empty production when it is next in line (the
        reconciler asks each tick: the one before it in line may have failed since)."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            return row.status == states.ACTIVE and _claim_production(db, row)

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

    def finish_deactivation(self, deployment_id: str) -> bool:
        """-> INACTIVE once every replica stopped; False (nothing changed) when the deployment
        is gone or is no longer meant to be inactive."""
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.status != states.INACTIVE,
                       t.c.desired_state == states.DESIRED_INACTIVE)
                .values(status=states.INACTIVE, status_detail=None, updated_at=now())
            ).rowcount
        return changed == 1

    # -- development deployments: scale to zero, wake, rebuild ---------------------------

    def scale_to_zero(self, deployment_id: str) -> bool:
        """ACTIVE or UNHEALTHY deployment -> SCALED_TO_ZERO (its desired state stays active: a
        request wakes it): an idle development one, or a published one its autoscaler wants at
        zero. A compare-and-set: False, nothing changed, when it was deactivated, rebuilt or is
        no longer serving meanwhile."""
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.desired_state == states.DESIRED_ACTIVE,
                       t.c.status.in_((states.ACTIVE, states.UNHEALTHY)))
                .values(status=states.SCALED_TO_ZERO, status_detail=None, updated_at=now())
            ).rowcount
        return changed == 1

    def wake(self, deployment_id: str) -> bool:
        """SCALED_TO_ZERO -> WAKING_UP (the reconciler starts its replica). False, nothing
        changed, when it was not scaled to zero."""
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.status == states.SCALED_TO_ZERO,
                       t.c.desired_state == states.DESIRED_ACTIVE)
                .values(status=states.WAKING_UP, status_detail=None, updated_at=now())
            ).rowcount
        return changed == 1

    def rebuild_development(
        self, deployment_id: str, *, archive_sha256: str, config: Mapping[str, Any], labels: Mapping[str, Any]
    ) -> Deployment:
        """Give the development deployment another tree and queue its build (BUILDING, meant
        to be active): what a development push with a new tree does. Its replicas are the
        reconciler's to stop (a BUILDING deployment runs none)."""
        if not _DIGEST.match(archive_sha256):
            raise StoreError(f"not a sha256 digest: {archive_sha256!r}")
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            if not row.is_development:
                raise StoreError(f"deployment {row.name} ({row.id}) is not the development deployment")
            db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(archive_sha256=archive_sha256, config=dict(config), labels=dict(labels),
                        desired_state=states.DESIRED_ACTIVE, running_tree_hash=None, pending_tree_hash=None,
                        pending_failed=False, rebuild=None, updated_at=now())  # a patch's rebuild is superseded
            )
            queue_build(db, deployment_id, None)  # one transaction with the new tree
            updated = db.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        return to_record(Deployment, updated)

    # -- what users change ----------------------------------------------------------------

    def rename(self, deployment_id: str, name: str) -> Deployment:
        """Give the deployment another name, unique within its model (its usage follows)."""
        check_name(name)
        try:
            with write_transaction(self._engine) as db:
                row = self._locked(db, deployment_id)
                if row.is_development:
                    raise StoreError("the development deployment is always named 'development'",
                                     hint="rename a published deployment instead", code="DEVELOPMENT_NOT_RENAMABLE")
                if row.name == name:
                    return to_record(Deployment, row)
                other = db.execute(sa.select(t.c.id).where(t.c.model_id == row.model_id, t.c.name == name)).first()
                if other is not None:
                    raise Conflict(f"deployment {other.id} of this model is named {name!r}",
                                   hint="choose another name", code="NAME_TAKEN")
                updated = db.execute(
                    t.update().where(t.c.id == deployment_id).values(name=name, updated_at=now()).returning(*t.c)
                ).first()
                rename_usage(db, deployment_id, name)
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"another deployment was named {name!r} at the same time", code="NAME_TAKEN") from exc
        return to_record(Deployment, updated)

    def deactivate(self, deployment_id: str) -> Deployment:
        """Ask for the deployment to stop serving (DEACTIVATING; the reconciler stops every
        replica, then INACTIVE). Unchanged when it already is or is going inactive."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            if row.desired_state == states.DESIRED_INACTIVE:
                return to_record(Deployment, row)
            if row.status in _UNBUILT:
                word = "is still building" if row.status == states.BUILDING else "never built"
                raise Conflict(f"deployment {row.name} ({row.id}) {word}: nothing runs to deactivate",
                               hint="delete it instead" if row.status == states.BUILD_FAILED else "wait for the build",
                               code="NOT_DEACTIVATABLE")
            updated = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(desired_state=states.DESIRED_INACTIVE, status=states.DEACTIVATING, status_detail=None,
                        updated_at=now())
                .returning(*t.c)
            ).first()
        return to_record(Deployment, updated)

    def activate(self, deployment_id: str) -> tuple[Deployment, bool]:
        """Ask for an inactive deployment to serve again from its stored build (DEPLOYING).
        Returns it and whether anything changed (an active one is left as it is)."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            if row.status in _FAILED:
                raise Conflict(f"deployment {row.name} ({row.id}) failed ({row.status})",
                               hint="build it again: truss deployments retry", code="NOT_ACTIVATABLE")
            if row.desired_state == states.DESIRED_ACTIVE:
                return to_record(Deployment, row), False
            if row.status != states.INACTIVE:
                raise Conflict(f"deployment {row.name} ({row.id}) is still deactivating",
                               hint="activate it once it is INACTIVE", code="NOT_ACTIVATABLE")
            if not row.build_artifact:
                raise Conflict(f"deployment {row.name} ({row.id}) has no build to start from",
                               hint="rebuild it: truss deployments retry", code="NOT_ACTIVATABLE")
            updated = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(desired_state=states.DESIRED_ACTIVE, status=states.DEPLOYING, status_detail=None,
                        updated_at=now())
                .returning(*t.c)
            ).first()
        return to_record(Deployment, updated), True

    def promote(self, deployment_id: str, environment: str | None = None, *,
                scale_down_previous: Any = _FROM_CONFIG) -> Deployment:
        """`promote_into`, answering the promoted deployment only (the reconciler's call)."""
        return self.promote_into(deployment_id, environment, scale_down_previous=scale_down_previous)[0]

    def promote_into(self, deployment_id: str, environment: str | None = None, *,
                     scale_down_previous: Any = _FROM_CONFIG) -> tuple[Deployment, Swap | None]:
        """Make this deployment what `environment` serves, in one transaction with the cleanup
        of the one it replaces (environments.promote_in). `environment` None: the one it was
        pushed into (`config["promote_environment"]`), else production; `scale_down_previous`
        left out: `config["scale_down_previous_deployment"]` (push's preserve flag), else the
        environment's strategy. -> (it, the swap; None when it already served there)."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            config = row.config or {}
            environment = environment or config.get("promote_environment") or PRODUCTION
            if scale_down_previous is _FROM_CONFIG:
                scale_down_previous = config.get("scale_down_previous_deployment")
            check_promotable(row)
            if row.environment == environment and (environment != PRODUCTION or row.is_production):
                return to_record(Deployment, row), None
            swap = promote_in(db, row.model_id, environment, deployment_id, scale_down_previous)
            updated = db.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        return to_record(Deployment, updated), swap

    def delete(self, deployment_id: str) -> Removed:
        """Delete a deployment that does not serve production, marking its usage deleted.
        Rows only: stopping the replicas it returns is the caller's job."""
        with write_transaction(self._engine) as db:
            row = self._locked(db, deployment_id)
            if row.is_production:
                model_name = db.execute(
                    sa.select(schema.models.c.name).where(schema.models.c.id == row.model_id)
                ).scalar_one()
                others = db.execute(
                    sa.select(t.c.name, t.c.status).where(t.c.model_id == row.model_id, t.c.id != row.id,
                                                          sa.not_(t.c.is_development))
                    .order_by(t.c.ordinal.desc())
                ).all()
                label = f"deployment {row.name} ({row.id}) serves production of model {model_name}"
                if not others:
                    raise Conflict(f"{label}, and is its only published deployment",
                                   hint=f"delete the model instead: {_command('truss', 'models', 'delete', model_name)}",
                                   code="PRODUCTION_NOT_DELETABLE")
                candidate = next((o.name for o in others if o.status == states.ACTIVE), others[0].name)
                raise Conflict(label, hint="promote another deployment first: "
                               + _command("truss", "deployments", "promote", "--model", model_name, candidate),
                               code="PRODUCTION_NOT_DELETABLE")
            return self._delete(db, [to_record(Deployment, row)])

    def prune(self, model_id: str, keep: int, *, dry_run: bool = False) -> tuple[Removed, list[Deployment]]:
        """Delete all but the newest `keep` deployments that are neither production nor
        development (newest by push order). Returns what was (or, dry, would be) deleted and
        the deployments kept."""
        if not isinstance(keep, int) or keep < 0:
            raise StoreError(f"keep must be a whole number of deployments, 0 or more, not {keep!r}")
        with write_transaction(self._engine) as db:
            if db.execute(sa.select(schema.models.c.id).where(schema.models.c.id == model_id)
                          .with_for_update()).first() is None:
                raise NotFound("model", model_id)
            rows = [to_record(Deployment, row) for row in
                    db.execute(sa.select(t).where(t.c.model_id == model_id).order_by(t.c.ordinal.desc()))]
            candidates = [d for d in rows if not d.is_production and not d.is_development]
            doomed = candidates[keep:]
            doomed_ids = {d.id for d in doomed}
            kept = [d for d in reversed(rows) if d.id not in doomed_ids]
            if dry_run:
                return Removed(tuple(reversed(doomed))), kept
            return self._delete(db, list(reversed(doomed))), kept

    # -- what the resource sweep asks ----------------------------------------------------

    def referenced_trees(self) -> set[str]:
        """The tree hashes some deployment still points at."""
        with read_transaction(self._engine) as db:
            rows = db.execute(sa.select(t.c.archive_sha256, t.c.running_tree_hash, t.c.pending_tree_hash))
            return {tree for row in rows for tree in row if tree}

    def artifact_references(self) -> set[str]:
        """The runtime artifacts (environment paths, image tags) some deployment still uses."""
        with read_transaction(self._engine) as db:
            artifacts = db.execute(sa.select(t.c.build_artifact).where(t.c.build_artifact.is_not(None))).scalars()
            return {a["reference"] for a in artifacts if a and a.get("reference")}

    # -- helpers --------------------------------------------------------------------------

    def _delete(self, db: sa.Connection, deployments: list[Deployment]) -> Removed:
        ids = [d.id for d in deployments]
        if not ids:
            return Removed()
        r = schema.replicas
        replicas = [to_record(Replica, row) for row in db.execute(sa.select(r).where(r.c.deployment_id.in_(ids)))]
        mark_deleted(db, ids, now())
        db.execute(t.delete().where(t.c.id.in_(ids)))
        return Removed(tuple(deployments), tuple(replicas))

    def _locked(self, db: sa.Connection, deployment_id: str) -> Any:
        row = db.execute(sa.select(t).where(t.c.id == deployment_id).with_for_update()).first()
        if row is None:
            raise NotFound("deployment", deployment_id)
        return row

    def _update(self, deployment_id: str, **values: Any) -> Deployment:
        with write_transaction(self._engine) as db:
            row = db.execute(
                t.update().where(t.c.id == deployment_id).values(updated_at=now(), **values).returning(*t.c)
            ).first()
        if row is None:
            raise NotFound("deployment", deployment_id)
        return to_record(Deployment, row)


def takes_production(deployment: Any) -> bool:
    """Meant to serve production once ACTIVE: pushed without an environment (production if it
    still serves nothing then), or promoted into production once ACTIVE (push --promote,
    promoting the development deployment); neither failed nor inactive."""
    config = deployment.config or {}
    meant = bool(config.get("production_if_empty")) or (
        bool(config.get("promote_when_active")) and (config.get("promote_environment") or PRODUCTION) == PRODUCTION)
    return (meant and not deployment.is_development and deployment.status not in _FAILED
            and deployment.desired_state == states.DESIRED_ACTIVE)


_FAILED = frozenset({states.BUILD_FAILED, states.DEPLOY_FAILED})


def _claim_production(db: sa.Connection, row: Any) -> bool:
    """Within the caller's transaction: make `row` what production serves if production serves
    nothing, no promotion into it is under way, and `row` is first in line: the oldest of the
    model's deployments meant to take production (`takes_production`). So a model's first push
    is its production once ACTIVE; one that failed never serves, and the next in line takes it.
    -> whether it did."""
    env, promotions = schema.environments, schema.promotions
    production = db.execute(
        sa.select(env.c.id, env.c.current_deployment_id)
        .where(env.c.model_id == row.model_id, env.c.name == PRODUCTION).with_for_update()
    ).first()
    if production is None or production.current_deployment_id is not None or not takes_production(row):
        return False
    if db.execute(sa.select(promotions.c.id).where(promotions.c.environment_id == production.id,
                                                   promotions.c.finished_at.is_(None))).first() is not None:
        return False
    earlier = db.execute(sa.select(t).where(t.c.model_id == row.model_id, t.c.ordinal < row.ordinal)).all()
    if any(takes_production(other) for other in earlier):
        return False
    promote_in(db, row.model_id, PRODUCTION, row.id, None, recorded=False)
    return True


def check_promotable(row: Any) -> None:
    """Refuse a deployment no environment can serve: the development one, an inactive one,
    a failed one (each with the command that fixes it)."""
    label = f"deployment {row.name} ({row.id})"
    if row.is_development:
        raise Conflict("the development deployment cannot serve an environment",
                       hint="promote it with truss deployments promote (publishes it), or push a published deployment",
                       code="NOT_PROMOTABLE")
    if row.desired_state == states.DESIRED_INACTIVE:
        raise Conflict(f"{label} is inactive", hint="activate it first: truss deployments activate",
                       code="NOT_PROMOTABLE")
    if row.status in _FAILED:
        raise Conflict(f"{label} failed ({row.status})", hint="retry it first: truss deployments retry",
                       code="NOT_PROMOTABLE")


def _check_status(status: str) -> None:
    if status not in states.DEPLOYMENT_STATUSES:
        raise StoreError(f"unknown deployment status {status!r}")
