"""Dashboard sessions (issue 12): one row per browser signed in with an admin key.

`token_sha256`: the sha256 of the cookie's random token (never the token). `api_key_id`: the
key it signed in with (a revoked key's sessions are refused on use; a deleted key's rows go
with it). `csrf_token`: what the session's pages send as X-CSRF-Token on every change.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(16), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("token_sha256", name="uq_dashboard_sessions_token_sha256"),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE",
                                name="fk_dashboard_sessions_api_key_id_api_keys"),
    )
    op.create_index("ix_dashboard_sessions_api_key_id", "dashboard_sessions", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_api_key_id", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
