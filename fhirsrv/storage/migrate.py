"""Alembic migrations, run programmatically: `fhirsrv db upgrade` and at start-up.

Running `upgrade head` at every start is cheap when the schema is current (one version-table
read) and makes a fresh SQLite file or an empty PostgreSQL database usable with no extra step.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from fhirsrv.storage.engine import unbounded_statements

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def ensure_schema(engine: Engine) -> None:
    upgrade(engine, "head")


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn, unbounded_statements(conn):  # an index on a large table takes time
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
