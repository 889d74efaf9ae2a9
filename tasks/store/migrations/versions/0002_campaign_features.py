"""Everything added before migrations existed: relaxation attempts and workers (reruns, SLURM), DFT calculations,
lab measurements, acquisitions (with their stage) and campaign leases.

Stores made between the first commit and this revision carry no version and hold some of these already, so every
step here adds only what is missing. Acquisitions made before the DFT stage existed were all relax-stage
rankings: the table is rebuilt with ``stage`` 'relax' and the wider unique key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
ACQUISITION_COLUMNS = ("campaign_id", "round_index", "candidate_id", "function", "predicted_e_above_hull", "sigma",
                       "value", "chosen", "rank")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _campaign_fk() -> sa.Column:
    return sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)


def _candidate_fk() -> sa.Column:
    return sa.Column("candidate_id", sa.Integer, sa.ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False)


def _dft_calculations() -> None:
    op.create_table(
        "dft_calculations",
        _id(),
        sa.Column("campaign_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("round_index", sa.Integer),
        sa.Column("structure", sa.Text, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("settings_hash", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(12), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("job_id", sa.String(40)),
        sa.Column("calc_dir", sa.Text, nullable=False),
        sa.Column("energy", sa.Float),
        sa.Column("energy_per_atom", sa.Float),
        sa.Column("final_structure", sa.Text),
        sa.Column("forces", sa.JSON),
        sa.Column("stress", sa.JSON),
        sa.Column("scf_converged", sa.Boolean),
        sa.Column("band_gap", sa.Float),
        sa.Column("wall_time_s", sa.Float),
        sa.Column("code_version", sa.String(60), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("campaign_id", "label", "settings_hash"),
    )
    op.create_index("ix_dft_calculations_campaign_id", "dft_calculations", ["campaign_id"])
    op.create_index("ix_dft_calculations_state", "dft_calculations", ["state"])


def _lab_measurements() -> None:
    op.create_table(
        "lab_measurements",
        _id(), _campaign_fk(), _candidate_fk(),
        sa.Column("property", sa.String(60), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("raw_value", sa.Float, nullable=False),
        sa.Column("raw_unit", sa.String(20), nullable=False),
        sa.Column("uncertainty", sa.Float),
        sa.Column("sample_id", sa.String(100), nullable=False),
        sa.Column("measured_on", sa.String(10), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("source_file", sa.Text, nullable=False),
        sa.Column("source_line", sa.Integer, nullable=False),
        sa.Column("row_hash", sa.String(24), nullable=False),
        sa.Column("ingested_at", TZ, nullable=False),
        sa.UniqueConstraint("campaign_id", "row_hash"),
    )
    op.create_index("ix_lab_measurements_campaign_id", "lab_measurements", ["campaign_id"])
    op.create_index("ix_lab_measurements_candidate_id", "lab_measurements", ["candidate_id"])


def _acquisitions(name: str) -> None:
    op.create_table(
        name,
        _id(), _campaign_fk(),
        sa.Column("stage", sa.String(10), nullable=False),
        sa.Column("round_index", sa.Integer, nullable=False),
        _candidate_fk(),
        sa.Column("function", sa.String(20), nullable=False),
        sa.Column("predicted_e_above_hull", sa.Float, nullable=False),
        sa.Column("sigma", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("chosen", sa.Boolean, nullable=False),
        sa.Column("rank", sa.Integer),
        sa.UniqueConstraint("campaign_id", "stage", "round_index", "candidate_id"),
    )


def _acquisition_indexes() -> None:
    op.create_index("ix_acquisitions_campaign_id", "acquisitions", ["campaign_id"])
    op.create_index("ix_acquisitions_candidate_id", "acquisitions", ["candidate_id"])


def _add_stage_to_acquisitions() -> None:
    """Rebuild a stage-less acquisitions table (its unique key changes too): copy, drop, rename, index."""
    _acquisitions("acquisitions_0002")
    columns = ", ".join(f'"{c}"' for c in ACQUISITION_COLUMNS)
    op.execute(f'INSERT INTO acquisitions_0002 (stage, {columns}) SELECT \'relax\', {columns} FROM acquisitions')
    for index in sa.inspect(op.get_bind()).get_indexes("acquisitions"):
        op.drop_index(index["name"], table_name="acquisitions")
    op.drop_table("acquisitions")
    op.rename_table("acquisitions_0002", "acquisitions")
    _acquisition_indexes()


def _campaign_leases() -> None:
    op.create_table(
        "campaign_leases",
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    relaxation_columns = {c["name"] for c in inspector.get_columns("relaxations")}
    with op.batch_alter_table("relaxations") as batch:
        if "attempt" not in relaxation_columns:
            batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="0"))
        if "worker" not in relaxation_columns:
            batch.add_column(sa.Column("worker", sa.JSON))
    if "dft_calculations" not in tables:
        _dft_calculations()
    if "lab_measurements" not in tables:
        _lab_measurements()
    if "acquisitions" not in tables:
        _acquisitions("acquisitions")
        _acquisition_indexes()
    elif "stage" not in {c["name"] for c in inspector.get_columns("acquisitions")}:
        _add_stage_to_acquisitions()
    if "campaign_leases" not in tables:
        _campaign_leases()


def downgrade() -> None:
    for table in ("campaign_leases", "acquisitions", "lab_measurements", "dft_calculations"):
        op.drop_table(table)
    with op.batch_alter_table("relaxations") as batch:
        batch.drop_column("worker")
        batch.drop_column("attempt")
