"""Workflows: the archive object a completed workflow's document was delivered to, and the flag on a pending
assignment whose account the directory sync disabled or removed (with when).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.add_column(sa.Column("archive_aoid", sa.String(64), nullable=True))
    with op.batch_alter_table("workflow_assignments") as batch:
        batch.add_column(sa.Column("flag", sa.String(500), nullable=True))
        batch.add_column(sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_assignments") as batch:
        batch.drop_column("flagged_at")
        batch.drop_column("flag")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("archive_aoid")
