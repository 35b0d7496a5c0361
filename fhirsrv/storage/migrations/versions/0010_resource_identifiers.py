"""resource identifiers: the directory's own identifiers, one live holder per type

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 16:00:00

Which identifiers are the directory's depends on the deployment's canonical base, which a
migration does not know: the server fills the table at start-up, and the marker it leaves in
server_state is removed here both ways, so a table created or dropped here is always refilled
(fhirsrv/interactions/identifiers.py, `fill_if_missing`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# fhirsrv.storage.identifiers.FILLED_FOR, spelt here: a migration must not change with the code.
MARKER = "resource_identifier.filled_for"


def _forget_marker() -> None:
    op.execute(sa.text("DELETE FROM server_state WHERE key = :key").bindparams(key=MARKER))


def upgrade() -> None:
    rid = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "resource_identifier",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("rid", rid, sa.ForeignKey("resource.rid", ondelete="CASCADE"), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_index("ix_resource_identifier_rid", "resource_identifier", ["rid"])
    _forget_marker()


def downgrade() -> None:
    op.drop_table("resource_identifier")
    _forget_marker()
