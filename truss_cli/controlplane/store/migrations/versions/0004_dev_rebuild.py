"""A development deployment's zero-downtime rebuild and its staged patch's hot-reload choice
(docs/live-reload.md, "Task B").

`rebuild` (JSON, null: none) is the contract's `patches/state` `rebuild` object while a
rebuild builds, deploys, or after it failed until the next patch is staged; kept in the
store so a control plane restarted in the middle resumes it. `hot_reload` is the last staged
patch's choice ("auto" / "off"), so a sync after a restart honours it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("rebuild", sa.JSON(), nullable=True))
    op.add_column("deployments", sa.Column("hot_reload", sa.String(8), nullable=False, server_default="auto"))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for name in ("hot_reload", "rebuild"):
            batch.drop_column(name)
