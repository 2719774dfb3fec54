"""Directory synchronisation: the sync state (high-water mark, last runs, last errors) and each
synchronised account's DN.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_sync",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("change_attribute", sa.String(32), nullable=True),
        sa.Column("high_water", sa.String(100), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_full_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_summary", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "directory_accounts",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("dn", sa.String(1000), nullable=False, index=True),
        sa.Column("change_mark", sa.String(100), nullable=True),
        sa.Column("disabled_by_sync", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("directory_accounts")
    op.drop_table("directory_sync")
