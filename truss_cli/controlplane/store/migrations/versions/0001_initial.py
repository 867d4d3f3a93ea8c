"""The first schema: models, deployments, replicas, builds, API keys, secrets.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("is_production", sa.Boolean(), nullable=False),
        sa.Column("is_development", sa.Boolean(), nullable=False),
        sa.Column("environment", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("desired_replicas", sa.Integer(), nullable=False),
        sa.Column("desired_state", sa.String(16), nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=True),
        sa.Column("build_artifact", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_deployments_model_id_models", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("model_id", "name", name="uq_deployments_model_id_name"),
        sa.UniqueConstraint("model_id", "ordinal", name="uq_deployments_model_id_ordinal"),
    )
    op.create_index(
        "uq_deployments_one_production",
        "deployments",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("is_production"),
        postgresql_where=sa.text("is_production"),
    )
    op.create_index(
        "uq_deployments_one_development",
        "deployments",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("is_development"),
        postgresql_where=sa.text("is_development"),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("handle", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], name="fk_replicas_deployment_id_deployments", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_replicas_deployment_id", "replicas", ["deployment_id"])
    op.create_table(
        "builds",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_builds"),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], name="fk_builds_deployment_id_deployments", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_builds_deployment_id", "builds", ["deployment_id"])
    op.create_index("ix_builds_state", "builds", ["state"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_secrets"),
    )


def downgrade() -> None:
    for table in ("secrets", "api_keys", "builds", "replicas", "deployments", "models"):
        op.drop_table(table)
