"""The last syncs of each development deployment (issue 12, the dashboard's Development tab).

One row per sync that moved, or tried to move, the deployment's code: when, from which tree
to which, what changed (counts and the first paths, JSON), the sync answer's `action` and
`reason`, the milliseconds the control plane measured, and a failure's first line. The store
keeps the newest 50 per deployment (pruned on insert); a deleted deployment's rows go with it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dev_syncs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=False),
        sa.Column("from_tree", sa.String(64), nullable=True),
        sa.Column("to_tree", sa.String(64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dev_syncs"),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_dev_syncs_deployment_id_deployments"),
    )
    op.create_index("ix_dev_syncs_deployment_id", "dev_syncs", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_dev_syncs_deployment_id", table_name="dev_syncs")
    op.drop_table("dev_syncs")
