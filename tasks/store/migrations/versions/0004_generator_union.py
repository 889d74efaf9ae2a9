"""A campaign's stored config holds the options of its own generator only: ``generator`` became a discriminated
union on ``generator.name`` (conf/generator.py), so the option blocks of the other three generators, which every
config stored before this revision carries (at their defaults or as given), are dropped from ``campaigns.config``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENERATORS = ("substitution", "random", "diffusion", "gan")


def upgrade() -> None:
    campaigns = sa.table("campaigns", sa.column("id", sa.String), sa.column("config", sa.JSON))
    bind = op.get_bind()
    for cid, config in bind.execute(sa.select(campaigns.c.id, campaigns.c.config)).all():
        block = (config or {}).get("generator")
        if not isinstance(block, dict):
            continue
        name = block.get("name", "substitution")
        kept = {k: v for k, v in block.items() if k not in GENERATORS or k == name}
        if kept != block:
            bind.execute(campaigns.update().where(campaigns.c.id == cid).values(config={**config, "generator": kept}))


def downgrade() -> None:
    """Nothing to restore: the older schema fills absent option blocks with their defaults."""
