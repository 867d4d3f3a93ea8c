"""A development deployment's patch points: which stored tree its replica runs, which one is
staged for it, and the compare-and-sets that move them (docs/live-reload.md).

Every change is a compare-and-set on the tree it expects, so two watchers, a sync and a
control-plane restart that finds a replica already at the staged tree never lose an update.
"""

from __future__ import annotations

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
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
            updated = db.execute(
                t.update().where(t.c.id == deployment_id)
                .values(pending_tree_hash=pending, pending_failed=False, patch_seq=t.c.patch_seq + 1, updated_at=now())
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
