"""Environments for promotion tests, before and after task A's store.environments is merged:
the row is written (or updated) straight into the `environments` table of migration 0005."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from truss_cli.controlplane.store import Store, schema
from truss_cli.controlplane.store.database import write_transaction
from truss_cli.controlplane.store.ids import new_id


def put_environment(store: Store, model_id: str, name: str, current_deployment_id: Optional[str],
                    promotion_settings: Mapping[str, Any] | None = None) -> None:
    t = schema.environments
    now = datetime.now(timezone.utc)
    values = dict(current_deployment_id=current_deployment_id, promotion_settings=dict(promotion_settings or {}),
                  updated_at=now)
    with write_transaction(store.engine) as db:
        changed = db.execute(t.update().where(t.c.model_id == model_id, t.c.name == name).values(**values)).rowcount
        if not changed:
            db.execute(t.insert().values(id=new_id(), model_id=model_id, name=name, autoscaling_settings=None,
                                         created_at=now, **values))


def ready_replicas(store: Store, deployment_id: str, count: int) -> None:
    """Make `count` of the deployment's replicas READY (adding or removing rows)."""
    replicas = store.replicas.list(deployment_id)
    for replica in replicas[count:]:
        store.replicas.remove(replica.id)
    for replica in replicas[:count]:
        store.replicas.set_phase(replica.id, "ready")
    for _ in range(count - len(replicas)):
        store.replicas.record(deployment_id, "process", {"pid": 0}, phase="ready")
