"""Indexes for the read commands at scale: counting a campaign's relaxed candidates reads (campaign_id, status)
only, and ranking its candidates by E_hull reads (campaign_id, relaxed_match, formula, round_index, hash) without
touching the rows' structures (`matloop status` on 100 000 candidates: see benchmarks/store_scale.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {"ix_candidates_campaign_status": ["campaign_id", "status"],
           "ix_candidates_campaign_match": ["campaign_id", "relaxed_match", "formula", "round_index", "hash"]}


def upgrade() -> None:
    have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("candidates")}
    for name, columns in INDEXES.items():
        if name not in have:
            op.create_index(name, "candidates", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="candidates")
