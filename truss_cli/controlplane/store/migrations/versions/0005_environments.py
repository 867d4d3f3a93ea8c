"""Environments, promotions and autoscaling settings (issue 11).

`environments`: a model's named environments; `production` exists for every model (backfilled
here from `deployments.is_production`). `current_deployment_id` is the deployment the
environment serves; the store keeps `deployments.is_production` / `deployments.environment`
equal to it in the same transaction (existing queries read those). `autoscaling_settings`
(null: each deployment's own) and `promotion_settings` are JSON in Baseten's field names.

`promotions`: one row per promotion of a deployment into an environment (instant, rolling,
canary), its status in Baseten's words, the traffic share of the candidate, the step reached,
a control asked for and not yet applied (pause, resume, cancel, force_cancel,
force_roll_forward), and the settings it runs with. At most one unfinished per environment.

`deployments.autoscaling_settings`: JSON, null = the defaults.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def upgrade() -> None:
    op.add_column("deployments", sa.Column("autoscaling_settings", sa.JSON(), nullable=True))
    op.create_table(
        "environments",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("model_id", sa.String(16), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("current_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("autoscaling_settings", sa.JSON(), nullable=True),
        sa.Column("promotion_settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "name", name="uq_environments_model_id_name"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("model_id", sa.String(16), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("environment_id", sa.String(16), sa.ForeignKey("environments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("candidate_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("previous_deployment_id", sa.String(16), sa.ForeignKey("deployments.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("percent_traffic_to_new_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("step", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("requested_action", sa.String(32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_promotions_environment_id", "promotions", ["environment_id"])
    op.create_index(
        "uq_promotions_one_unfinished", "promotions", ["environment_id"], unique=True,
        sqlite_where=sa.text("finished_at IS NULL"), postgresql_where=sa.text("finished_at IS NULL"),
    )
    _production_for_every_model()


def _production_for_every_model() -> None:
    db = op.get_bind()
    models = sa.table("models", sa.column("id"))
    deployments = sa.table("deployments", sa.column("id"), sa.column("model_id"), sa.column("is_production"))
    environments = sa.table(
        "environments", sa.column("id"), sa.column("model_id"), sa.column("name"), sa.column("current_deployment_id"),
        sa.column("autoscaling_settings", sa.JSON()), sa.column("promotion_settings", sa.JSON()),
        sa.column("created_at"), sa.column("updated_at"),
    )
    production = dict(db.execute(sa.select(deployments.c.model_id, deployments.c.id).where(deployments.c.is_production)).all())
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for (model_id,) in db.execute(sa.select(models.c.id)).all():
        db.execute(environments.insert().values(
            id="".join(secrets.choice(_ALPHABET) for _ in range(8)), model_id=model_id, name="production",
            current_deployment_id=production.get(model_id), autoscaling_settings=None, promotion_settings={},
            created_at=now, updated_at=now,
        ))


def downgrade() -> None:
    op.drop_index("uq_promotions_one_unfinished", table_name="promotions")
    op.drop_index("ix_promotions_environment_id", table_name="promotions")
    op.drop_table("promotions")
    op.drop_table("environments")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("autoscaling_settings")
