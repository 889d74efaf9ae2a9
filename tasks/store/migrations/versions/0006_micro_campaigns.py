"""Microstructure campaigns (issue 22): micro_campaigns, micro_rounds, micro_evaluations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _now():
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "micro_campaigns" not in have:
        op.create_table(
            "micro_campaigns",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("config", sa.JSON(none_as_null=True), nullable=False),
            sa.Column("generator_hash", sa.String(64), nullable=False),
            sa.Column("campaign_dir", sa.Text(), nullable=False),
            sa.Column("created_at", _now(), nullable=False),
            sa.Column("updated_at", _now(), nullable=False))
    if "micro_rounds" not in have:
        op.create_table(
            "micro_rounds",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("campaign_id", sa.String(32), sa.ForeignKey("micro_campaigns.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("index", sa.Integer(), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("summary", sa.JSON(none_as_null=True), nullable=False),
            sa.Column("updated_at", _now(), nullable=False),
            sa.UniqueConstraint("campaign_id", "index"))
        op.create_index("ix_micro_rounds_campaign_id", "micro_rounds", ["campaign_id"])
    if "micro_evaluations" not in have:
        op.create_table(
            "micro_evaluations",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("campaign_id", sa.String(32), sa.ForeignKey("micro_campaigns.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("round_index", sa.Integer(), nullable=False),
            sa.Column("slot", sa.Integer(), nullable=False),
            sa.Column("conditions", sa.JSON(none_as_null=True), nullable=False),
            sa.Column("source", sa.String(20), nullable=False),
            sa.Column("predicted", sa.Float()),
            sa.Column("sigma", sa.Float()),
            sa.Column("value", sa.Float()),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("images_path", sa.Text()),
            sa.Column("valid", sa.JSON(none_as_null=True)),
            sa.Column("volume_fractions", sa.JSON(none_as_null=True)),
            sa.Column("values", sa.JSON(none_as_null=True)),
            sa.Column("mean", sa.Float()),
            sa.Column("std", sa.Float()),
            sa.Column("in_band", sa.Boolean()),
            sa.Column("error", sa.Text()),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("updated_at", _now(), nullable=False),
            sa.UniqueConstraint("campaign_id", "round_index", "slot"))
        op.create_index("ix_micro_evaluations_campaign_id", "micro_evaluations", ["campaign_id"])


def downgrade() -> None:
    for table in ("micro_evaluations", "micro_rounds", "micro_campaigns"):
        op.drop_table(table)
