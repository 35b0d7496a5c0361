"""What the command groups share: the --database option and an engine on a migrated schema."""

from __future__ import annotations

import click
from sqlalchemy import Engine

from fhirsrv.settings import Settings

DATABASE = click.option(
    "--database", default=None, help="SQLAlchemy URL (default: FHIRSRV_DATABASE_URL or embedded SQLite)."
)


def settings_with(database: str | None) -> Settings:
    """The settings parsed by `fhirsrv` (or the environment's), with --database on top."""
    context = click.get_current_context(silent=True)
    parsed = context.find_object(Settings) if context is not None else None
    base = parsed if parsed is not None else Settings.from_env()
    return base.overridden(database_url=database)


def engine_for(database: str | None) -> Engine:
    """An engine on the chosen database, its schema migrated to the latest revision."""
    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.migrate import ensure_schema

    engine = make_engine(settings_with(database).database_url)
    ensure_schema(engine)
    return engine
