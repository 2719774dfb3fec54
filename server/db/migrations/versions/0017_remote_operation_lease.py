"""Remote signing operations: the lease of the worker signing one (a dead worker's operation is taken over
once the lease has run out) and the states encrypted at rest; operations waiting at the upgrade end (their
states were kept in plain text).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM remote_operations"))
    # nullable columns without constraints: a plain ALTER TABLE ADD COLUMN on SQLite too
    op.add_column("remote_operations", sa.Column("taker", sa.String(64), nullable=True))  # the signing worker's claim
    op.add_column("remote_operations", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM remote_operations"))  # their states are encrypted: 0016 read them as JSON
    with op.batch_alter_table("remote_operations") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("taker")
