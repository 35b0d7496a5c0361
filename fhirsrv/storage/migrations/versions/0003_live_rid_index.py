"""index live resources of a type in id order (paging and counting searches)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 20:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_resource_type_live_rid", "resource", ["res_type", "deleted", "rid"])


def downgrade() -> None:
    op.drop_index("ix_resource_type_live_rid", table_name="resource")
