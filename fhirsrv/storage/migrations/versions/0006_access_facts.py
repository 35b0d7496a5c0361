"""access facts: per-entry visibility and the structures' territories

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 13:00:00

The rows are derived from the stored resources with the deployment's canonical base (the
lifecycle extension's URL), which a migration does not know: the server fills them at start-up
when they are missing (fhirsrv/access/facts.py, `rebuild_if_missing`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rid = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "entry_access",
        sa.Column("rid", rid, sa.ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64), nullable=True),
        sa.Column("structure", sa.String(64), nullable=True),
        sa.Column("person", sa.String(64), nullable=True),
        sa.Column("commune", sa.String(8), nullable=True),
        sa.Column("visibility", sa.String(16), nullable=False),
    )
    op.create_index("ix_entry_access_type_visibility_rid", "entry_access", ["res_type", "visibility", "rid"])
    op.create_index("ix_entry_access_structure_type_rid", "entry_access", ["structure", "res_type", "rid"])
    op.create_index("ix_entry_access_person", "entry_access", ["person"])
    op.create_index("ix_entry_access_commune", "entry_access", ["commune", "structure"])
    for name, where in (("public", "visibility = 'public'"), ("listed", "visibility <> 'hidden'")):
        op.create_index(
            f"ix_entry_access_{name}",
            "entry_access",
            ["rid", "res_type"],
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    op.create_table(
        "structure_territory",
        sa.Column("structure", sa.String(64), primary_key=True),
        sa.Column("departement", sa.String(8), primary_key=True),
    )
    op.create_index(
        "ix_structure_territory_departement", "structure_territory", ["departement", "structure"]
    )


def downgrade() -> None:
    op.drop_table("structure_territory")
    op.drop_table("entry_access")
