"""`fhirsrv db`: bring a database up to this version, and copy it (backup, restore).

`upgrade` leaves a database ready to serve: the migrations, then what the server derives from the
stored resources and that an older version did not keep (access facts, identifiers, search index
rows built by other rules), so the first request after an upgrade finds what a fresh load would.
`backup` and `restore` never migrate nor open the database through the server: a backup is
taken before an upgrade, and a restore brings back the revision the backup was taken at.
"""

from __future__ import annotations

import click

from fhirsrv.cli_common import DATABASE, settings_with


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
    from fhirsrv.storage.migrate import current
    from fhirsrv.wiring import build_services

    services = build_services(settings_with(database))
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
