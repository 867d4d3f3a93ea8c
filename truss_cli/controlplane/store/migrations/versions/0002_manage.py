"""Managing models and deployments: descriptions, READMEs, versions, and usage that outlives
deployments.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("description", sa.Text(), nullable=False, server_default=""))
    op.add_column("models", sa.Column("readme", sa.Text(), nullable=False, server_default=""))
    op.add_column("models", sa.Column("last_version", sa.String(32), nullable=True))
    op.add_column("models", sa.Column("last_ordinal", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("deployments", sa.Column("version", sa.String(32), nullable=True))
    op.create_table(
        "usage",
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("model_id", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("deployment_name", sa.String(255), nullable=False),
        sa.Column("replica_seconds", sa.Float(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("deployment_id", "hour", name="pk_usage"),
    )
    op.create_index("ix_usage_model_id", "usage", ["model_id"])
    _number_existing_deployments()


def _number_existing_deployments() -> None:
    """Deployments published before versions existed get 0.1.0, 0.2.0, ... in push order,
    so the next push continues from the highest; each model remembers its highest ordinal."""
    db = op.get_bind()
    models = sa.table("models", sa.column("id"), sa.column("last_version"), sa.column("last_ordinal"))
    deployments = sa.table(
        "deployments", sa.column("id"), sa.column("model_id"), sa.column("ordinal"),
        sa.column("is_development"), sa.column("version"),
    )
    rows = db.execute(
        sa.select(deployments.c.id, deployments.c.model_id)
        .where(sa.not_(deployments.c.is_development))
        .order_by(deployments.c.model_id, deployments.c.ordinal)
    ).all()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.model_id] = counts.get(row.model_id, 0) + 1
        version = f"0.{counts[row.model_id]}.0"
        db.execute(deployments.update().where(deployments.c.id == row.id).values(version=version))
    for model_id, count in counts.items():
        db.execute(models.update().where(models.c.id == model_id).values(last_version=f"0.{count}.0"))
    highest = db.execute(
        sa.select(deployments.c.model_id, sa.func.max(deployments.c.ordinal)).group_by(deployments.c.model_id)
    ).all()
    for model_id, ordinal in highest:
        db.execute(models.update().where(models.c.id == model_id).values(last_ordinal=ordinal))


def downgrade() -> None:
    op.drop_index("ix_usage_model_id", table_name="usage")
    op.drop_table("usage")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("last_ordinal")
        batch.drop_column("last_version")
        batch.drop_column("readme")
        batch.drop_column("description")
