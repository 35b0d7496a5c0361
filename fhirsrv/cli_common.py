"""What the command groups share: the --database option and an engine on a migrated schema."""

from __future__ import annotations

import click
from sqlalchemy import Engine

from fhirsrv.settings import Settings

DATABASE = click.option(
    "--database", default=None, help="SQLAlchemy URL (default: FHIRSRV_DATABASE_URL or embedded SQLite)."
)


# Key of the command's database URL in click's context meta (shared by nested contexts), so
# the command group can name the database in its one-line error when it is unavailable.
DATABASE_IN_USE = "fhirsrv.database_url"


def remember_database(settings: Settings) -> None:
    context = click.get_current_context(silent=True)
    if context is not None:
        context.meta[DATABASE_IN_USE] = settings.database_url


def settings_with(database: str | None) -> Settings:
    """The settings parsed by `fhirsrv` (or the environment's), with --database on top."""
    context = click.get_current_context(silent=True)
    parsed = context.find_object(Settings) if context is not None else None
    base = parsed if parsed is not None else Settings.from_env()
    settings = base.overridden(database_url=database)
    remember_database(settings)
    return settings


def engine_for(database: str | None) -> Engine:
    """An engine on the chosen database, its schema migrated to the latest revision."""
    from fhirsrv.storage.engine import engine_for as make_engine_for
    from fhirsrv.storage.migrate import ensure_schema

    engine = make_engine_for(settings_with(database))
    ensure_schema(engine)
    return engine
