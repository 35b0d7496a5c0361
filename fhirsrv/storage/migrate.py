"""Alembic migrations, run programmatically: `fhirsrv db upgrade` and at start-up.

Running `upgrade head` at every start is cheap when the schema is current (one version-table
read) and makes a fresh SQLite file or an empty PostgreSQL database usable with no extra step.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

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


def head_revisions() -> frozenset[str]:
    """The revisions this code's migrations end at (read from the migration files, no database)."""
    return _revisions()[0]


def stored_revisions(conn: Connection) -> frozenset[str]:
    """The revisions the database says it is at, in one statement (a readiness probe's)."""
    return frozenset(row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version")))


def known_revisions() -> frozenset[str]:
    """Every revision of this code's migrations: a stored one outside them was written by
    another (newer) version of the server."""
    return _revisions()[1]


@functools.cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """Read once a process: the migration files do not change under a running server."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())
