"""Counters handed out in blocks (the TSA's serial numbers); issued_timestamps keys are given, not generated.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    issued = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(serial), 0) FROM issued_timestamps")).scalar_one()
    op.bulk_insert(counters, [{"name": "tsa_serial", "value": int(issued)}])


def downgrade() -> None:
    op.drop_table("counters")
