"""value indexes end with rid: index-only reads of matches, exact probes of one resource

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 22:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    "idx_string": [("res_type", "param", "value_norm")],
    "idx_token": [("res_type", "param", "code", "system")],
    "idx_reference": [
        ("res_type", "param", "target_type", "target_id"),
        ("target_type", "target_id", "param"),
    ],
    "idx_date": [("res_type", "param", "low"), ("res_type", "param", "high")],
    "idx_number": [("res_type", "param", "value")],
    "idx_uri": [("res_type", "param", "value")],
    "idx_geo": [("res_type", "latitude", "longitude")],
    "idx_sort": [("res_type", "param", "value_text")],
}


def _name(table: str, cols: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(cols)}"


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        for cols in indexes:
            op.drop_index(_name(table, cols), table_name=table)
            op.create_index(_name(table, cols) + "_rid", table, [*cols, "rid"])


def downgrade() -> None:
    for table, indexes in INDEXES.items():
        for cols in indexes:
            op.drop_index(_name(table, cols) + "_rid", table_name=table)
            op.create_index(_name(table, cols), table, list(cols))
