"""the inclusion procedure: applications, and the kind and e-mail of clients

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_client") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=True))
        batch.add_column(sa.Column("email", sa.String(256), nullable=True))
        batch.add_column(sa.Column("communes", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "application",
        sa.Column("organization", sa.String(64), primary_key=True),
        sa.Column("referent_email", sa.String(256), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("token_expires", sa.DateTime(), nullable=False),
        sa.Column("confirmed", sa.DateTime(), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("answers", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
    )
    op.create_index("ix_application_address_created", "application", ["address", "created"])


def downgrade() -> None:
    op.drop_table("application")
    with op.batch_alter_table("oauth_client") as batch:
        batch.drop_column("communes")
        batch.drop_column("email")
        batch.drop_column("kind")
