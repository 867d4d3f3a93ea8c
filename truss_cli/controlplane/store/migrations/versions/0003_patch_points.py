"""Patch points of development deployments: the tree the replica runs and the tree staged
for it (docs/live-reload.md). Both are stored trees (trees.py), so a replica started later
or a promotion materialises them from the blob store.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("running_tree_hash", sa.String(64), nullable=True))
    op.add_column("deployments", sa.Column("pending_tree_hash", sa.String(64), nullable=True))
    op.add_column("deployments", sa.Column("pending_failed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("deployments", sa.Column("patch_seq", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for name in ("patch_seq", "pending_failed", "pending_tree_hash", "running_tree_hash"):
            batch.drop_column(name)
