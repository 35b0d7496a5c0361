"""An empty PostgreSQL schema per benchmark, so runs never measure each other's leftovers."""

from __future__ import annotations

from sqlalchemy import text

from fhirsrv.storage.engine import make_engine


def fresh_schema(url: str, schema: str) -> str:
    """Drop and recreate `schema`; return `url` with its search_path set to it."""
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"
