"""A development deployment's patch points: which stored tree its replica runs, which one is
staged for it, and the compare-and-sets that move them (docs/live-reload.md).

Every change is a compare-and-set on the tree it expects, so two watchers, a sync and a
control-plane restart that finds a replica already at the staged tree never lose an update.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import sqlalchemy as sa

from truss_cli.controlplane.store import dev_syncs, schema, states
from truss_cli.controlplane.store._rows import now, to_record
from truss_cli.controlplane.store.database import write_transaction
from truss_cli.controlplane.store.errors import NotFound, StoreError
from truss_cli.controlplane.store.records import Deployment

t = schema.deployments
_CURRENT = sa.func.coalesce(t.c.pending_tree_hash, t.c.running_tree_hash, t.c.archive_sha256)


class StaleBase(StoreError):
    """The patch was computed against a tree that is no longer the deployment's current one."""

    def __init__(self, deployment: Deployment):
        super().__init__(f"the development deployment is at tree {deployment.current_tree}")
        self.deployment = deployment


class PatchPoints:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def stage(self, deployment_id: str, base: str, tree_hash: str) -> Deployment:
        """Stage `tree_hash` (a stored tree) when the deployment's current tree is `base`;
        StaleBase otherwise. A patch that returns to the running tree leaves nothing staged."""
        with write_transaction(self._engine) as db:
            row = db.execute(sa.select(t).where(t.c.id == deployment_id).with_for_update()).first()
            if row is None:
                raise NotFound("deployment", deployment_id)
            deployment = to_record(Deployment, row)
            if not deployment.is_development:
                raise StoreError(f"deployment {deployment.name} ({deployment.id}) is not the development deployment")
            if deployment.current_tree != base:
                raise StaleBase(deployment)
            pending = None if tree_hash == deployment.running_tree else tree_hash
            values: dict[str, Any] = {}
            if deployment.rebuild and not deployment.rebuilding:
                values["rebuild"] = None  # a failed rebuild is shown until the next patch
            updated = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(pending_tree_hash=pending, pending_failed=False, patch_seq=t.c.patch_seq + 1, updated_at=now(),
                        **values)
                .returning(*t.c)
            ).first()
        return to_record(Deployment, updated)

    def advance(self, deployment_id: str, tree_hash: str) -> bool:
        """The replica runs `tree_hash`, the staged tree: it becomes the running one. False
        (nothing changed) when another tree was staged meanwhile."""
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update().where(t.c.id == deployment_id, t.c.pending_tree_hash == tree_hash)
                .values(running_tree_hash=tree_hash, pending_tree_hash=None, pending_failed=False, updated_at=now())
            ).rowcount
        return changed == 1

    def refused(self, deployment_id: str, tree_hash: str) -> bool:
        """A replica failed on the staged `tree_hash`: new replicas start at the running tree
        until the next patch. False when another tree was staged meanwhile."""
        with write_transaction(self._engine) as db:
            changed = db.execute(
                t.update().where(t.c.id == deployment_id, t.c.pending_tree_hash == tree_hash)
                .values(pending_failed=True, updated_at=now())
            ).rowcount
        return changed == 1

    # -- a development rebuild (docs/live-reload.md, contract C2) -------------------------

    def begin_rebuild(self, deployment_id: str, tree_hash: str, reason: str) -> bool:
        """The staged `tree_hash` needs a rebuild: record it (phase building). False when
        another tree was staged meanwhile or a rebuild builds or deploys already."""
        with write_transaction(self._engine) as db:
            deployment = self._locked(db, deployment_id)
            if deployment.pending_tree_hash != tree_hash or deployment.rebuilding:
                return False
            rebuild = {"tree_hash": tree_hash, "reason": reason, "phase": "building", "error": None,
                       "build_log_tail": None}
            db.execute(t.update().where(t.c.id == deployment_id).values(rebuild=rebuild, updated_at=now()))
        return True

    def rebuild_phase(self, deployment_id: str, tree_hash: str, phase: str, error: Optional[str] = None,
                      build_log_tail: Optional[list[str]] = None) -> bool:
        """Move the rebuild of `tree_hash` to `phase`. Failed: the staged tree is marked refused
        (new replicas start at the running tree; the next patch builds on it). False when no
        rebuild of that tree is recorded (superseded, or the deployment was deleted)."""
        with write_transaction(self._engine) as db:
            try:
                deployment = self._locked(db, deployment_id)
            except NotFound:
                return False
            if not deployment.rebuild or deployment.rebuild.get("tree_hash") != tree_hash:
                return False
            values: dict[str, Any] = {
                "rebuild": {**deployment.rebuild, "phase": phase, "error": error, "build_log_tail": build_log_tail},
                "updated_at": now(),
            }
            if phase == "failed" and deployment.pending_tree_hash == tree_hash:
                values["pending_failed"] = True
            db.execute(t.update().where(t.c.id == deployment_id).values(**values))
            if phase == "failed" and deployment.rebuild.get("phase") != "failed":
                dev_syncs.record_rebuild_end(db, deployment_id, tree_hash, "failed", error)  # the sync history
        return True

    def rebuilt(self, deployment_id: str, tree_hash: str, artifact: Mapping[str, Any],
                config: Mapping[str, Any]) -> Optional[Deployment]:
        """A replica built for `tree_hash` serves: it becomes the running tree, `artifact` what
        replicas start from and `config` the row's (secret names, metadata of the new
        config.yaml); the deployment's current tree stays staged when it is another one (the
        next sync sends it).
        None when no rebuild of that tree is recorded any more."""
        with write_transaction(self._engine) as db:
            try:
                deployment = self._locked(db, deployment_id)
            except NotFound:
                return None
            if not deployment.rebuild or deployment.rebuild.get("tree_hash") != tree_hash:
                return None
            # What the client last staged stays to be synced: a newer tree, or the old running
            # tree when a patch went back to it during the rebuild.
            current = deployment.current_tree
            pending = None if current == tree_hash else current
            # The rebuild ends once the gateway routes to the new replica (`switched`): until
            # then a client reading `patches/state` must not see it done.
            values: dict[str, Any] = {"rebuild": {**deployment.rebuild, "phase": "switching"}}
            if deployment.desired_state == states.DESIRED_ACTIVE:
                # Its new replica is ready: it serves (a deployment that had failed, or slept
                # meanwhile, included; the reconciler routes to the replica from its next tick).
                values.update(status=states.ACTIVE, status_detail=None)
            updated = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(running_tree_hash=tree_hash, pending_tree_hash=pending, pending_failed=False,
                        build_artifact=dict(artifact), config=dict(config), updated_at=now(), **values)
                .returning(*t.c)
            ).first()
        return to_record(Deployment, updated)

    def switched(self, deployment_id: str, tree_hash: str) -> None:
        """The rebuild of `tree_hash` is over: its replica is routed (or the deployment was
        deactivated meanwhile). Nothing when another rebuild is recorded."""
        with write_transaction(self._engine) as db:
            try:
                deployment = self._locked(db, deployment_id)
            except NotFound:
                return
            rebuild = deployment.rebuild or {}
            if rebuild.get("tree_hash") == tree_hash and rebuild.get("phase") == "switching":
                db.execute(t.update().where(t.c.id == deployment_id).values(rebuild=None, updated_at=now()))
                dev_syncs.record_rebuild_end(db, deployment_id, tree_hash, "rebuilt")  # the sync history

    def rebuilds_in_progress(self) -> list[Deployment]:
        """Development deployments whose rebuild builds or deploys (a restart resumes them)."""
        with write_transaction(self._engine) as db:
            rows = db.execute(sa.select(t).where(t.c.is_development, t.c.rebuild.is_not(None))).all()
        return [d for d in (to_record(Deployment, row) for row in rows) if d.rebuilding]

    def set_hot_reload(self, deployment_id: str, choice: str) -> None:
        """The staged patch's hot-reload choice, for the sync that sends it (even after a restart)."""
        with write_transaction(self._engine) as db:
            db.execute(t.update().where(t.c.id == deployment_id).values(hot_reload=choice))

    @staticmethod
    def _locked(db: sa.Connection, deployment_id: str) -> Deployment:
        row = db.execute(sa.select(t).where(t.c.id == deployment_id).with_for_update()).first()
        if row is None:
            raise NotFound("deployment", deployment_id)
        return to_record(Deployment, row)
