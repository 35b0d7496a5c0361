"""Index values cut to the length of their column, the same way when indexing and when searching.

The index columns are bounded (String(64) to String(1024)): PostgreSQL refused a longer value
(a 600-character identifier made the write fail with a 500) and SQLite stored it whole. Longer
values are stored, not refused: the resource keeps them as written, its index rows keep their
first N characters, and a search value is cut to the same N before it is compared, so a long
code is found by its full value. Two values that share their first N characters (N is at least
256 for codes and identifiers) are then indistinguishable to the index; no real code is that long.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String

from fhirsrv.storage.schema import INDEX_TABLES

# table name -> column name -> its length, for the bounded text columns of the index tables.
LIMITS: dict[str, dict[str, int]] = {
    table.name: {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    }
    for table in INDEX_TABLES
}


def fit(column: Column[Any] | Any, value: str) -> str:
    """`value` as the column holds it: its first `length` characters."""
    length = getattr(column.type, "length", None)
    return value[:length] if length and len(value) > length else value


def fit_rows(table: str, rows: list[dict[str, Any]]) -> None:
    """Cut, in place, every text value of `rows` (index rows of `table`) to its column."""
    limits = LIMITS.get(table)
    if not limits:
        return
    for row in rows:
        for name, value in row.items():
            length = limits.get(name)
            if length and isinstance(value, str) and len(value) > length:
                row[name] = value[:length]
