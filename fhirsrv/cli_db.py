"""`fhirsrv db`: bring a database up to this version, and copy it (backup, restore).

`upgrade` leaves a database ready to serve: the migrations, then what the server derives from the
stored resources and that an older version did not keep (access facts, identifiers, search index
rows built by other rules), so the first request after an upgrade finds what a fresh load would.
`backup` and `restore` never migrate nor open the database through the server: a backup is
taken before an upgrade, and a restore brings back the revision the backup was taken at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fhirsrv.cli_common import DATABASE, settings_with

# The upgrade's lock: its PostgreSQL advisory key and its SQLite lock file's name.
UPGRADE_LOCK_KEY = 7_420
UPGRADE_LOCK_NAME = "upgrade"


@click.group()
def db() -> None:
    """Database schema and copies (Alembic migrations; sqlite3 backup API, pg_dump/pg_restore)."""


@db.command()
@DATABASE
def upgrade(database: str | None) -> None:
    """Apply every migration up to the latest, add the shipped conformance and terminology
    resources the database lacks, and rebuild search indexes built by other rules."""
    from fhirsrv.interactions.load import load_missing_conformance
    from fhirsrv.interactions.reindex import reindex_if_outdated
    from fhirsrv.storage.engine import engine_for
    from fhirsrv.storage.locks import exclusively
    from fhirsrv.storage.migrate import current
    from fhirsrv.wiring import build_services

    # An operator's one-off work, like a load: not bounded by the requests' statement timeout
    # (rebuilding the access facts of a large directory takes longer than 30 s).
    settings = settings_with(database).overridden(db_statement_timeout=0)
    guard = engine_for(settings)
    # Containers started together each run this: one upgrades, the others wait and find it done.
    try:
        with exclusively(guard, UPGRADE_LOCK_NAME, UPGRADE_LOCK_KEY):
            services = build_services(settings)
            try:
                added = load_missing_conformance(services)
                if added.counts:
                    listed = ", ".join(f"{t} {n}" for t, n in sorted(added.counts.items()))
                    click.echo(f"conformance and terminology content added: {listed}")
                reindexed = reindex_if_outdated(services)
                if reindexed is not None:
                    click.echo(f"search indexes rebuilt for {reindexed} resources")
                click.echo(f"database at revision {current(services.engine)}")
            finally:
                services.engine.dispose()
    finally:
        guard.dispose()


def _described(url: str) -> str:
    from sqlalchemy.engine import make_url

    from fhirsrv.storage.engine import normalise_url

    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


@db.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=True))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@DATABASE
def backup(file: Path, force: bool, database: str | None) -> None:
    """Write a consistent copy of the database to FILE, while the server runs (SQLite: online
    backup API; PostgreSQL: pg_dump --format=custom of the URL's schema)."""
    from fhirsrv.storage.backup import BackupError
    from fhirsrv.storage.backup import backup as copy

    url = settings_with(database).database_url
    try:
        done = copy(url, file, force=force)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"backup of {_described(url)} at revision {done.revision} written to {file} ({_megabytes(done.size)})"
    )


@db.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace what the database already holds.")
@DATABASE
def restore(file: Path, force: bool, database: str | None) -> None:
    """Bring the backup FILE back into the database, which must be empty (stop the server
    first). The database is left at the backup's revision: the next start migrates it."""
    from fhirsrv.storage.backup import BackupError
    from fhirsrv.storage.backup import restore as bring_back

    url = settings_with(database).database_url
    try:
        done = bring_back(url, file, force=force)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{file} restored into {_described(url)}, at revision {done.revision}")
