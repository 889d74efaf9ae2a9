"""The first store schema (matloop's first commit, d4d00a1): campaigns, rounds, seeds, candidates, proposals,
verdicts, relaxations, properties, reference energies.

Frozen here as it was, so a store of any age can be rebuilt and upgraded in tests; stores made before
migrations existed carry no version and are treated as this revision plus whatever 0002 finds already there.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _campaign_fk() -> sa.Column:
    return sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)


def _candidate_fk() -> sa.Column:
    return sa.Column("candidate_id", sa.Integer, sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("config_hash", sa.String(16), nullable=False),
        sa.Column("mlip", sa.String(300)),
        sa.Column("mlip_spec", sa.JSON),
        sa.Column("campaign_dir", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "rounds",
        _id(), _campaign_fk(),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("conditions", sa.JSON),
        sa.Column("feedback", sa.JSON),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("campaign_id", "index"),
    )
    op.create_table(
        "seeds",
        _id(), _campaign_fk(),
        sa.Column("seed_id", sa.String(200), nullable=False),
        sa.Column("hash", sa.String(16), nullable=False),
        sa.Column("formula", sa.String(100), nullable=False),
        sa.Column("structure", sa.Text, nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("relax_cell", sa.Boolean, nullable=False),
        sa.Column("known_phase", sa.Boolean, nullable=False),
        sa.Column("template", sa.Boolean, nullable=False),
        sa.UniqueConstraint("campaign_id", "seed_id"),
    )
    op.create_table(
        "candidates",
        _id(), _campaign_fk(),
        sa.Column("hash", sa.String(16), nullable=False),
        sa.Column("round_index", sa.Integer, nullable=False),
        sa.Column("formula", sa.String(100), nullable=False),
        sa.Column("nsites", sa.Integer, nullable=False),
        sa.Column("structure", sa.Text, nullable=False),
        sa.Column("generator", sa.String(40), nullable=False),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("relaxed_match", sa.String(200)),
        sa.UniqueConstraint("campaign_id", "hash"),
    )
    op.create_table(
        "proposals",
        _id(), _campaign_fk(),
        sa.Column("round_index", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        _candidate_fk(),
        sa.Column("key", sa.String(300), nullable=False),
        sa.UniqueConstraint("campaign_id", "round_index", "position"),
    )
    op.create_table(
        "verdicts",
        sa.Column("proposal_id", sa.Integer, sa.ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True),
        _campaign_fk(),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("rejections", sa.JSON, nullable=False),
        sa.Column("matched_hash", sa.String(200)),
    )
    op.create_table(
        "relaxations",
        _id(), _candidate_fk(),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("mlip", sa.String(300), nullable=False),
        sa.Column("settings_hash", sa.String(16), nullable=False),
        sa.Column("energy", sa.Float),
        sa.Column("energy_per_atom", sa.Float),
        sa.Column("max_force", sa.Float),
        sa.Column("n_steps", sa.Integer, nullable=False),
        sa.Column("volume_ratio", sa.Float),
        sa.Column("final_structure", sa.Text),
        sa.Column("wall_time_s", sa.Float, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("candidate_id", "settings_hash", "mlip"),
    )
    op.create_table(
        "properties",
        _id(), _candidate_fk(),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("round_index", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("candidate_id", "name", "source", "model"),
    )
    op.create_table(
        "reference_energies",
        _id(),
        sa.Column("mlip", sa.String(300), nullable=False),
        sa.Column("settings_hash", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(16), nullable=False),
        sa.Column("formula", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("energy_per_atom", sa.Float),
        sa.Column("final_structure", sa.Text),
        sa.UniqueConstraint("mlip", "settings_hash", "hash"),
    )
    for table in ("rounds", "seeds", "candidates", "proposals", "verdicts"):
        op.create_index(f"ix_{table}_campaign_id", table, ["campaign_id"])
    op.create_index("ix_seeds_formula", "seeds", ["formula"])
    op.create_index("ix_candidates_formula", "candidates", ["formula"])
    for table in ("relaxations", "properties"):
        op.create_index(f"ix_{table}_candidate_id", table, ["candidate_id"])


def downgrade() -> None:
    for table in ("reference_energies", "properties", "relaxations", "verdicts", "proposals", "candidates", "seeds",
                  "rounds", "campaigns"):
        op.drop_table(table)
