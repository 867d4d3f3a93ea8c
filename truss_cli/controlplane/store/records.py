"""Immutable snapshots of rows, as the store hands them out.

Frozen so a caller cannot mistake editing one for changing the database: every change goes
through a store method, which is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from truss_cli.controlplane.store import states


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    created_at: datetime
    description: str = ""
    readme: str = ""
    last_version: str | None = None
    last_ordinal: int = 0


@dataclass(frozen=True)
class Deployment:
    id: str
    model_id: str
    name: str
    ordinal: int
    version: str | None
    is_production: bool
    is_development: bool
    environment: str | None
    status: str
    status_detail: str | None
    desired_replicas: int
    desired_state: str
    archive_sha256: str | None
    build_artifact: Mapping[str, Any] | None
    config: Mapping[str, Any]
    labels: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    running_tree_hash: str | None = None
    pending_tree_hash: str | None = None
    pending_failed: bool = False
    patch_seq: int = 0
    rebuild: Mapping[str, Any] | None = None  # patches/state's `rebuild`: tree_hash, reason, phase, error, ...
    hot_reload: str = "auto"

    @property
    def rebuilding(self) -> bool:
        """A rebuild builds, deploys or switches routing to its new replica (the old replica
        serves meanwhile; patches wait for it)."""
        return bool(self.rebuild) and self.rebuild.get("phase") in ("building", "deploying", "switching")

    @property
    def running_tree(self) -> str | None:
        """The tree its replica runs: the last patch point synced, else the built tree."""
        return self.running_tree_hash or self.archive_sha256

    @property
    def current_tree(self) -> str | None:
        """The tree the next patch builds on: the staged one, else the running one."""
        return self.pending_tree_hash or self.running_tree

    @property
    def start_tree(self) -> str | None:
        """The tree a new replica starts at: the staged one unless a replica refused it or a
        rebuild is making the environment it needs (the built one cannot run it)."""
        if self.pending_tree_hash and not self.pending_failed and not self.rebuilding:
            return self.pending_tree_hash
        return self.running_tree


@dataclass(frozen=True)
class Removed:
    """What a delete took out of the database in its one transaction: the deployments and
    the replicas they had (whose processes or containers the caller still has to stop)."""

    deployments: tuple[Deployment, ...] = ()
    replicas: tuple["Replica", ...] = ()


@dataclass(frozen=True)
class Replica:
    id: str
    deployment_id: str
    runtime: str
    handle: Mapping[str, Any]
    phase: str
    started_at: datetime
    restarts: int
    updated_at: datetime


@dataclass(frozen=True)
class Build:
    id: str
    deployment_id: str
    state: str
    log_path: str | None
    cause: str | None
    attempts: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ApiKey:
    """A key as listings show it: its public prefix (the id), never the token or its hash."""

    id: str
    name: str | None
    scope: str
    models: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def prefix(self) -> str:
        return self.id

    @property
    def is_admin(self) -> bool:
        return self.scope == states.SCOPE_ADMIN

    def may_invoke(self, model_name: str) -> bool:
        """Whether this key may call `model_name`'s predict routes."""
        return self.is_admin or not self.models or model_name in self.models


@dataclass(frozen=True)
class SecretInfo:
    """A secret as listings show it: its name and dates, no value."""

    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: the only time its plaintext exists outside the user's hands."""

    key: ApiKey
    plaintext: str = field(repr=False)


@dataclass(frozen=True)
class UsageTotal:
    """One deployment's usage summed over the hours asked for; the names are the last it had."""

    model_id: str
    model_name: str
    deployment_id: str
    deployment_name: str
    replica_seconds: float
    requests: int
    deleted_at: datetime | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class UsageAccrual:
    """Usage the reconciler counted since its last flush; the names are the ones it saw, used
    only when the deployment no longer exists to say its own."""

    deployment_id: str
    model_id: str
    model_name: str
    deployment_name: str
    replica_seconds: float = 0.0
    requests: int = 0
