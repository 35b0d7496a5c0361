"""terminology: client closure tables of ConceptMap/$closure

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "closure_table",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "name"),
    )
    op.create_table(
        "closure_member",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("system", sa.String(length=512), nullable=False),
        sa.Column("code", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner", "name"], ["closure_table.owner", "closure_table.name"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner", "name", "system", "code"),
    )


def downgrade() -> None:
    op.drop_table("closure_member")
    op.drop_table("closure_table")
