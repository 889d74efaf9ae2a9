"""Properties carry an uncertainty: the property predictor's sigma (source ``predictor``); null where none is
known (MLIP, DFT and lab values, and every value stored before this revision).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a store without a version (made before migrations) may come from a matloop that had this column already
    if "uncertainty" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("properties")}:
        return
    with op.batch_alter_table("properties") as batch:
        batch.add_column(sa.Column("uncertainty", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.drop_column("uncertainty")
