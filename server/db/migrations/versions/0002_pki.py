"""Internal PKI: CAs, certificates, CRLs, issued timestamps, scheduled jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "certificate_authorities",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("parent", sa.String(64), sa.ForeignKey("certificate_authorities.name"), nullable=True),
        sa.Column("key_label", sa.String(200), nullable=False),
        sa.Column("certificate_serial", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("crl_number", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", _TZ, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("key_label", sa.String(200), nullable=False),
        sa.Column("not_before", _TZ, nullable=False),
        sa.Column("not_after", _TZ, nullable=False, index=True),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("revoked_at", _TZ, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_table(
        "crls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ca", sa.String(64), sa.ForeignKey("certificate_authorities.name"), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("this_update", _TZ, nullable=False),
        sa.Column("next_update", _TZ, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "issued_timestamps",
        sa.Column("serial", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("gen_time", _TZ, nullable=False),
        sa.Column("hash_algorithm", sa.String(16), nullable=False),
        sa.Column("imprint", sa.String(128), nullable=False),
        sa.Column("policy", sa.String(100), nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("next_run", _TZ, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", _TZ, nullable=True),
        sa.Column("last_ok", _TZ, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    for table in ("jobs", "issued_timestamps", "crls", "certificates", "certificate_authorities"):
        op.drop_table(table)
