"""Workflow assignments: the remote (CSC) signing operation a step's signer started and that waits for the OTP
(``remote_operations.id``), so that only that operation completes the step.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column without constraints: a plain ALTER TABLE ADD COLUMN on SQLite too
    op.add_column("workflow_assignments", sa.Column("remote_operation", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_assignments") as batch:
        batch.drop_column("remote_operation")
