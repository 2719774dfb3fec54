"""Long-term archive: archive objects, versions, items (digests per algorithm and their hash trees), hash trees,
archive timestamps and the leaves of hash-tree renewals.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_ALGORITHMS = ("sha256", "sha384", "sha512")


def upgrade() -> None:
    op.create_table(
        "archive_objects",
        sa.Column("aoid", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.Column("deletion_reason", sa.String(2000), nullable=True),
    )
    op.create_table(
        "archive_versions",
        sa.Column("aoid", sa.String(32), sa.ForeignKey("archive_objects.aoid"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("metadata_json", sa.Text, nullable=False),
    )
    op.create_table(
        "archive_trees",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("lineage", sa.String(16), nullable=False),
        sa.Column("chain", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("tree", sa.LargeBinary, nullable=False),
        sa.Column("items", sa.LargeBinary, nullable=False),
        sa.Column("superseded", sa.Boolean, nullable=False),
        sa.Column("renews_tree", sa.Integer, sa.ForeignKey("archive_trees.id"), nullable=True),
        sa.Column("renews_position", sa.Integer, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "archive_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("aoid", sa.String(32), sa.ForeignKey("archive_objects.aoid"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("mime_type", sa.String(200), nullable=False),
        sa.Column("stored", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("indication", sa.String(32), nullable=True),
        sa.Column("report", sa.Text, nullable=True),
        *(sa.Column(f"digest_{a}", sa.LargeBinary, nullable=True) for a in _ALGORITHMS),
        *(sa.Column(f"tree_{a}", sa.Integer, sa.ForeignKey("archive_trees.id"), nullable=True) for a in _ALGORITHMS),
    )
    for a in _ALGORITHMS:
        where = sa.text(f"tree_{a} IS NULL AND digest_{a} IS NOT NULL")
        op.create_index(f"ix_archive_items_pending_{a}", "archive_items", ["id"], sqlite_where=where,
                        postgresql_where=where)
    op.create_index("ix_archive_items_stored", "archive_items", ["digest_sha256"], sqlite_where=sa.text("stored"),
                    postgresql_where=sa.text("stored"))
    op.create_table(
        "archive_timestamps",
        sa.Column("tree_id", sa.Integer, sa.ForeignKey("archive_trees.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("token", sa.LargeBinary, nullable=False),
        sa.Column("tsa_not_after", _TS, nullable=False, index=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "archive_leaves",
        sa.Column("item_id", sa.Integer, sa.ForeignKey("archive_items.id"), primary_key=True),
        sa.Column("tree_id", sa.Integer, sa.ForeignKey("archive_trees.id"), primary_key=True, index=True),
    )


def downgrade() -> None:
    for table in ("archive_leaves", "archive_timestamps", "archive_items", "archive_trees", "archive_versions",
                  "archive_objects"):
        op.drop_table(table)
