"""A second, empty database beside the test's own (a server to load an export into)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from fhirsrv.storage.engine import make_engine


@pytest.fixture
def target_url(db_url: str, tmp_path: Path, worker_id: str) -> Iterator[str]:
    """An empty database on the back-end of `db_url`: a new SQLite file, or a new schema."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'target.sqlite3'}"
        return
    schema = f"fhirsrv_target_{worker_id}_{os.getpid()}"
    admin = make_engine(db_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = db_url.split("?", 1)[0]
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()
