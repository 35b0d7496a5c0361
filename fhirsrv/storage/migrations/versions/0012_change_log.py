"""change_log: every change to an entry, numbered in commit order

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 00:00:00

Syncing clients (`_history`), subscriptions and exports resume "after the last change seen";
timestamps cannot say that safely on PostgreSQL (storage/changes.py). Existing versions are
numbered here in the order of their timestamps, which is all an older database knows, with the
entry's current visibility.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    row_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "change_log",
        sa.Column("seq", row_id, primary_key=True, autoincrement=True),
        sa.Column("rid", row_id, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("new_version", sa.Boolean(), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("previous_visibility", sa.String(16), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO change_log (rid, res_type, res_id, version_id, new_version, visibility, at) "
        "SELECT v.rid, v.res_type, v.res_id, v.version_id, true, r.visibility, v.last_updated "
        "FROM resource_version v JOIN resource r ON r.rid = v.rid "
        "ORDER BY v.last_updated, v.rid, v.version_id"
    )
    op.create_index("ix_change_log_rid_seq", "change_log", ["rid", "seq"])
    op.create_index("ix_change_log_type_seq", "change_log", ["res_type", "seq"])
    op.create_index("ix_change_log_at", "change_log", ["at"])


def downgrade() -> None:
    op.drop_table("change_log")
