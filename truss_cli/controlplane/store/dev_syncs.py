"""The last syncs of development deployments: what the dashboard's Development tab and
`GET .../patches/history` show (docs/live-reload.md, "Sync history").

A row is written where the sync's answer is known (routes/patches.py), after the answer is
made, so a slow database never delays a save reaching the replica. The newest `KEEP` rows
per deployment are kept: each insert deletes the ones beyond, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Optional

import sqlalchemy as sa

from truss_cli.controlplane.store import schema
from truss_cli.controlplane.store._rows import now, one_line, to_record
from truss_cli.controlplane.store.database import read_transaction, write_transaction
from truss_cli.controlplane.store.errors import NotFound

t = schema.dev_syncs
KEEP = 50  # rows per deployment
PATHS_KEPT = 20  # paths per sync; the counts cover them all


@dataclass(frozen=True)
class DevSync:
    id: int
    deployment_id: str
    synced_at: datetime
    from_tree: Optional[str]
    to_tree: str
    changes: Mapping[str, Any]  # {"added", "updated", "deleted": counts, "paths": [{"path", "change"}]}
    action: str  # the sync answer's (hot_swap, restart, requirements, rebuild, deferred), failed, or a rebuild's end: rebuilt
    reason: Optional[str]
    ms: Optional[float]  # what the control plane measured, patch received (or sync asked) to answered
    error: Optional[str]  # a failure's first line

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "synced_at": self.synced_at.isoformat(), "from_tree": self.from_tree,
                "to_tree": self.to_tree, "changes": dict(self.changes), "action": self.action,
                "reason": self.reason, "ms": self.ms, "error": self.error}


def changes_between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from manifest `old` to `new` (path -> entry): counts, and the first
    PATHS_KEPT paths in path order with how each changed."""
    changed = sorted([(path, "added") for path in new if path not in old]
                     + [(path, "updated") for path in new if path in old and old[path] != new[path]]
                     + [(path, "deleted") for path in old if path not in new])
    counts = {kind: sum(1 for _, c in changed if c == kind) for kind in ("added", "updated", "deleted")}
    return {**counts, "paths": [{"path": path, "change": change} for path, change in changed[:PATHS_KEPT]]}


class DevSyncs:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def record(self, deployment_id: str, *, from_tree: Optional[str], to_tree: str, changes: Mapping[str, Any],
               action: str, reason: Optional[str] = None, ms: Optional[float] = None,
               error: Optional[str] = None) -> DevSync:
        """Keep one sync; the deployment's rows beyond the newest KEEP are deleted. NotFound
        when the deployment is gone."""
        values = {"deployment_id": deployment_id, "synced_at": now(), "from_tree": from_tree, "to_tree": to_tree,
                  "changes": dict(changes), "action": action, "reason": reason, "ms": ms,
                  "error": one_line(error)}
        try:
            return self._record(deployment_id, values)
        except sa.exc.IntegrityError:  # the deployment was deleted meanwhile
            raise NotFound("deployment", deployment_id) from None

    def _record(self, deployment_id: str, values: dict[str, Any]) -> DevSync:
        with write_transaction(self._engine) as db:
            return insert(db, values)

    def recent(self, deployment_id: str, limit: int = KEEP) -> list[DevSync]:
        """The deployment's last `limit` syncs, newest first."""
        with read_transaction(self._engine) as db:
            rows = db.execute(
                sa.select(t).where(t.c.deployment_id == deployment_id).order_by(t.c.id.desc()).limit(limit)
            ).all()
        return [to_record(DevSync, row) for row in rows]


def insert(db: sa.Connection, values: Mapping[str, Any]) -> DevSync:
    """Insert a row and prune the deployment's beyond KEEP, in the caller's transaction."""
    deployment_id = values["deployment_id"]
    row = db.execute(t.insert().values(**values).returning(*t.c)).first()
    oldest_kept = db.execute(
        sa.select(t.c.id).where(t.c.deployment_id == deployment_id).order_by(t.c.id.desc()).offset(KEEP - 1).limit(1)
    ).scalar()
    if oldest_kept is not None:
        db.execute(t.delete().where(t.c.deployment_id == deployment_id, t.c.id < oldest_kept))
    return to_record(DevSync, row)


def record_rebuild_end(db: sa.Connection, deployment_id: str, tree_hash: str, action: str,
                       error: Optional[str] = None) -> None:
    """A rebuild of `tree_hash` ended (`rebuilt`: its replica is routed; `failed`, the error
    prefixed "rebuild: "): a row with
    the time since the sync that asked for it (its `rebuild` row: what changed, from which
    tree), in the caller's transaction (store/patch_points.py). A rebuild no sync asked for
    (a development push's) gets a row without changes or ms."""
    asked = db.execute(
        sa.select(t).where(t.c.deployment_id == deployment_id, t.c.to_tree == tree_hash, t.c.action == "rebuild")
        .order_by(t.c.id.desc()).limit(1)
    ).first()
    stamp = now()
    ms = None if asked is None else round((stamp - asked.synced_at).total_seconds() * 1000, 1)
    insert(db, {"deployment_id": deployment_id, "synced_at": stamp, "from_tree": asked.from_tree if asked else None,
                "to_tree": tree_hash, "changes": dict(asked.changes) if asked else {}, "action": action,
                "reason": asked.reason if asked else None, "ms": ms,
                "error": None if error is None else f"rebuild: {one_line(error) or 'failed'}"})
