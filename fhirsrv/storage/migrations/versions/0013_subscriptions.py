"""subscriptions: who owns a resource of an owned type, and the delivery state of Subscriptions

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 12:00:00

A Subscription is visible to the client that created it only (`resource_owner`); its delivery
loop keeps its position in the change log, its members and its queued events beside it
(fhirsrv/sync/tables.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    row_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "resource_owner",
        sa.Column("rid", row_id, sa.ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
    )
    op.create_index("ix_resource_owner_owner_type", "resource_owner", ["owner", "res_type", "rid"])
    op.create_table(
        "subscription_state",
        sa.Column("rid", row_id, sa.ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("handshake", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_table(
        "subscription_member",
        sa.Column(
            "subscription",
            row_id,
            sa.ForeignKey("subscription_state.rid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rid", row_id, primary_key=True),
    )
    op.create_table(
        "subscription_event",
        sa.Column(
            "subscription",
            row_id,
            sa.ForeignKey("subscription_state.rid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.BigInteger(), primary_key=True),
        sa.Column("rid", row_id, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("matches", sa.Boolean(), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subscription_event")
    op.drop_table("subscription_member")
    op.drop_table("subscription_state")
    op.drop_table("resource_owner")
