"""The tables, as SQLAlchemy Core objects the store's queries are written against.

Core rather than the ORM: the store hands callers frozen snapshots (records.py) and every
change is one explicit transaction, so an identity map, lazy loading and session state would
only add ways for a thread to see a stale or half-flushed object. Migrations (migrations/)
create these tables; tests/test_store_migrations.py checks the two never drift apart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData(
    # Named constraints, so a later migration can drop or alter them on both databases.
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the column.

    SQLite keeps no offset and PostgreSQL's timestamptz converts to the session's zone; storing
    naive UTC everywhere and attaching UTC on the way out gives both the same answer.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store takes aware datetimes only")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def _id(name: str = "id") -> sa.Column[str]:
    return sa.Column(name, sa.String(16), primary_key=True)


models = sa.Table(
    "models",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # What `truss models show` prints: a line of text and a markdown README, both editable.
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("readme", sa.Text, nullable=False, server_default=""),
    # The highest version any of its deployments took, deleted ones included, so a version is
    # never handed out twice.
    sa.Column("last_version", sa.String(32), nullable=True),
    # The highest deployment ordinal it handed out, so deployment-N names never repeat either.
    sa.Column("last_ordinal", sa.Integer, nullable=False, server_default="0"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    _id(),
    sa.Column("model_id", sa.String(16), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # deployment-N's N; every deployment takes one, so default names never repeat.
    sa.Column("ordinal", sa.Integer, nullable=False),
    # Semantic version of a published deployment ("0.1.0"); null for the development one.
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("is_production", sa.Boolean, nullable=False, default=False),
    sa.Column("is_development", sa.Boolean, nullable=False, default=False),
    sa.Column("environment", sa.String(255), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    # The one-line cause shown beside a failed or unhealthy status.
    sa.Column("status_detail", sa.Text, nullable=True),
    sa.Column("desired_replicas", sa.Integer, nullable=False),
    sa.Column("desired_state", sa.String(16), nullable=False),
    sa.Column("archive_sha256", sa.String(64), nullable=True),
    # What the runtime's prepare() returned (environment path, image reference): JSON.
    sa.Column("build_artifact", sa.JSON, nullable=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # Development deployments' patch points (stored trees): the tree its replica runs (null:
    # the built one, archive_sha256), the tree staged for it and not yet running (null: none),
    # whether a replica refused the staged one (a new replica then starts at the running
    # one), and how many patches it took.
    sa.Column("running_tree_hash", sa.String(64), nullable=True),
    sa.Column("pending_tree_hash", sa.String(64), nullable=True),
    sa.Column("pending_failed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("patch_seq", sa.Integer, nullable=False, server_default="0"),
    # A development rebuild in progress or failed (patches/state's `rebuild` object; null:
    # none), and the last staged patch's hot-reload choice ("auto" / "off").
    sa.Column("rebuild", sa.JSON, nullable=True),
    sa.Column("hot_reload", sa.String(8), nullable=False, server_default="auto"),
    # Baseten's autoscaling_settings (min_replica, max_replica, ...); null: the defaults.
    sa.Column("autoscaling_settings", sa.JSON, nullable=True),
    sa.UniqueConstraint("model_id", "name"),
    sa.UniqueConstraint("model_id", "ordinal"),
)
# At most one production and one development deployment per model, enforced by the database
# so that two concurrent promotions cannot both win.
sa.Index(
    "uq_deployments_one_production",
    deployments.c.model_id,
    unique=True,
    sqlite_where=deployments.c.is_production,
    postgresql_where=deployments.c.is_production,
)
sa.Index(
    "uq_deployments_one_development",
    deployments.c.model_id,
    unique=True,
    sqlite_where=deployments.c.is_development,
    postgresql_where=deployments.c.is_development,
)

# A model's environments (production for every model, others by users). The deployment an
# environment serves is `current_deployment_id`; the store keeps deployments.is_production and
# deployments.environment equal to it in the same transaction.
environments = sa.Table(
    "environments",
    metadata,
    _id(),
    sa.Column("model_id", sa.String(16), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("current_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True),
    sa.Column("autoscaling_settings", sa.JSON, nullable=True),  # null: each deployment's own
    sa.Column("promotion_settings", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("model_id", "name", name="uq_environments_model_id_name"),
)

# Promotions of a deployment into an environment: instant, rolling or canary; at most one
# unfinished per environment (the database says so, for two concurrent promote calls).
promotions = sa.Table(
    "promotions",
    metadata,
    _id(),
    sa.Column("model_id", sa.String(16), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    sa.Column("environment_id", sa.String(16), sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("candidate_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("previous_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # instant | rolling | canary
    sa.Column("status", sa.String(32), nullable=False),  # RELEASING, RAMPING_UP, PAUSED, ... SUCCEEDED
    sa.Column("percent_traffic_to_new_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requested_action", sa.String(32), nullable=True),  # a control applied at the next step boundary
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
)
sa.Index(
    "uq_promotions_one_unfinished",
    promotions.c.environment_id,
    unique=True,
    sqlite_where=promotions.c.finished_at.is_(None),
    postgresql_where=promotions.c.finished_at.is_(None),
)

replicas = sa.Table(
    "replicas",
    metadata,
    _id(),
    sa.Column(
        "deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("runtime", sa.String(32), nullable=False),
    # What the runtime needs to find the replica again after a restart (url, pid, container id).
    sa.Column("handle", sa.JSON, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

builds = sa.Table(
    "builds",
    metadata,
    _id(),
    sa.Column(
        "deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("log_path", sa.Text, nullable=True),
    sa.Column("cause", sa.Text, nullable=True),
    # How many times a worker took it: more than 1 means a control plane died during it.
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("queued_at", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    # The id is the key's public prefix: shown in listings, used to find the row to compare.
    _id(),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("scope", sa.String(16), nullable=False),
    # Model names an invoke key may call; empty means every model.
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    # nonce || AES-GCM ciphertext+tag, bound to the name (secrets.py).
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Usage per deployment per hour. No foreign keys: the rows outlive the deployment (and the
# model) they count, carrying the names they had; `deleted_at` marks the deleted ones.
usage = sa.Table(
    "usage",
    metadata,
    sa.Column("deployment_id", sa.String(16), primary_key=True),
    sa.Column("hour", UtcDateTime(), primary_key=True),  # the bucket's start, on the hour
    sa.Column("model_id", sa.String(16), nullable=False, index=True),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("deployment_name", sa.String(255), nullable=False),
    sa.Column("replica_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
)

# Dashboard sign-ins (issue 12): the browser holds an opaque token, the row its sha256 (a
# database dump gives no usable cookie), the key it signed in with and the CSRF token its
# pages send back. A revoked key's sessions stop working at once (the store checks the key on
# every use); deleting a key row deletes them.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    _id(),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("api_key_id", sa.String(16), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

# The last syncs of a development deployment (issue 12's Development tab; migration 0007):
# one row per sync that moved or tried to move its code, the newest 50 kept per deployment.
dev_syncs = sa.Table(
    "dev_syncs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # insertion order
    sa.Column(
        "deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
    sa.Column("from_tree", sa.String(64), nullable=True),
    sa.Column("to_tree", sa.String(64), nullable=False),
    # {"added": n, "updated": n, "deleted": n, "paths": [{"path", "change"}, ...the first 20]}
    sa.Column("changes", sa.JSON, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
