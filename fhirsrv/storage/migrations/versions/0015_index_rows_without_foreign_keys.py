"""index tables: rid is no longer a foreign key to resource

Each index row's key check made PostgreSQL look up and lock the resource's row: about 45 times
per resource, half of the database's CPU in a bulk load. Index rows are derived data, written
and removed with their resource by rid, and resource rows are never deleted (schema.py).

On SQLite the tables are rebuilt without the constraint (SQLite cannot drop one in place): a
copy of each index table, once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = ("idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_uri", "idx_geo", "idx_sort")
# The name SQLite's unnamed constraints are given for the batch rebuild to find them by.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _foreign_keys(table: str) -> list[str | None]:
    return [fk.get("name") for fk in sa.inspect(op.get_bind()).get_foreign_keys(table) if fk["referred_table"] == "resource"]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        names = _foreign_keys(table)
        if not names:
            continue
        if sqlite:
            with op.batch_alter_table(table, recreate="always", naming_convention=NAMING) as batch:
                batch.drop_constraint(f"fk_{table}_rid_resource", type_="foreignkey")
        else:
            for name in names:
                op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        if sqlite:
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.create_foreign_key(f"fk_{table}_rid_resource", "resource", ["rid"], ["rid"], ondelete="CASCADE")
        else:
            op.create_foreign_key(f"{table}_rid_fkey", table, "resource", ["rid"], ["rid"], ondelete="CASCADE")
