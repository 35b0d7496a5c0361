"""SQLite: every stored date in the one fixed-width text form that queries bind

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00

SQLite compares dates as text. Rows written at driver speed (storage/bulk.py) took the driver's
form, which leaves out a zero fraction of a second ('2026-07-03 00:00:00'), while SQLAlchemy
binds '2026-07-03 00:00:00.000000' in queries: the shorter text sorts first, so a search for
that day missed it and `lt` took it in. The rows so written get their six zero digits; the
other forms were already right. PostgreSQL stores timestamps: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The date columns that storage/bulk.py writes.
COLUMNS = {
    "resource": ("last_updated",),
    "resource_version": ("last_updated",),
    "idx_date": ("low", "high"),
    "idx_sort": ("value_date",),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(f"UPDATE {table} SET {column} = {column} || '.000000' WHERE length({column}) = 19")


def downgrade() -> None:
    """Nothing to undo: the code before this revision bound the long form too."""
