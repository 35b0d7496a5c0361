"""auth: OAuth 2 clients and used client-assertion ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("secret_hash", sa.String(length=512), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("departements", sa.String(length=512), nullable=False),
        sa.Column("organization", sa.String(length=128), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "oauth_jti",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti"),
    )


def downgrade() -> None:
    op.drop_table("oauth_jti")
    op.drop_table("oauth_client")
