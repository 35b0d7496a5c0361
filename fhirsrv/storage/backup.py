"""Copies of the database: taken while the server runs, brought back into an empty database.

SQLite: the sqlite3 online backup API, in one step. It reads the database in one read
transaction, so the copy is the database as one commit left it, while the server's writers go
on (WAL mode: they never wait for a reader). The copy is written beside the target under a
temporary name and renamed when complete: a backup that fails leaves no half file behind.

PostgreSQL: `pg_dump --format=custom`, which also reads in one snapshot, of the schema the
database URL's search_path names (else the whole database), and `pg_restore` into an empty
database. The password goes to the tools in a password file only the server's user may read,
removed afterwards, never on a command line that `ps` shows.

Neither opens the database through the server nor migrates it: a backup is what is taken
before an upgrade, and a restore brings back the revision the backup was taken at (the next
start, or `fhirsrv db upgrade`, migrates it).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from fhirsrv.storage.engine import make_engine, normalise_url
from fhirsrv.storage.migrate import current

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_ARCHIVE_MAGIC = b"PGDMP"
# Seconds a SQLite backup or restore waits for a lock (another writer's commit) before failing.
SQLITE_LOCK_WAIT = 60


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Copy:
    """What a backup wrote or a restore brought back: the file, its size, the schema revision."""

    path: Path
    size: int
    revision: str | None


def is_sqlite_url(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "sqlite"


def backup(url: str, target: Path, *, force: bool = False) -> Copy:
    """Copy the database of `url` into the file `target` (replaced only with `force`)."""
    if target.is_dir():
        raise BackupError(f"{target} is a directory: name the backup file")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: choose another file name, or --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} to write {target.name} in")
    with _partial(target) as partial:
        revision = _sqlite_backup(url, partial) if is_sqlite_url(url) else _pg_dump(url, partial)
    return Copy(target, target.stat().st_size, revision)


def restore(url: str, source: Path, *, force: bool = False) -> Copy:
    """Bring the backup `source` back into the database of `url`, which must hold no fhirsrv
    schema (with `force`, what it holds is replaced). Stop the server first."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    kind = _kind_of(source)
    sqlite = is_sqlite_url(url)
    if kind == "pg" and sqlite:
        raise BackupError(
            f"{source} is a PostgreSQL archive (pg_dump): restore it into a PostgreSQL database"
        )
    if kind == "sqlite" and not sqlite:
        raise BackupError(
            f"{source} is a SQLite database: restore it into a SQLite database (sqlite:///FILE)"
        )
    if kind is None:
        raise BackupError(f"{source} is neither a SQLite database nor a pg_dump custom-format archive")
    revision = _sqlite_restore(url, source, force) if sqlite else _pg_restore(url, source, force)
    return Copy(source, source.stat().st_size, revision)


def _kind_of(path: Path) -> str | None:
    with path.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_ARCHIVE_MAGIC):
        return "pg"
    return None


@contextmanager
def _partial(target: Path) -> Iterator[Path]:
    """A temporary file beside `target`, renamed to it if the block succeeds, else removed."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ SQLite
def _sqlite_path(url: str) -> Path:
    database = make_url(normalise_url(url)).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database has no file to back up or restore")
    return Path(database)


def _revision_of(conn: sqlite3.Connection, path: Path) -> str | None:
    """The Alembic revision of a SQLite database (None: no fhirsrv schema in it)."""
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} cannot be read as a SQLite database: {exc}") from exc
    return row[0] if row else None


def _checked(conn: sqlite3.Connection, path: Path) -> None:
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise BackupError(f"{path} failed SQLite's integrity check: {problems[0]}")


def _sqlite_backup(url: str, partial: Path) -> str | None:
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path}")
    # Opened read-write as the server opens it (a read-only connection cannot use the WAL
    # index of a database no one has open); the backup only reads.
    with closing(sqlite3.connect(source_path, timeout=SQLITE_LOCK_WAIT)) as source:
        revision = _revision_of(source, source_path)
        if revision is None:
            raise BackupError(f"{source_path} holds no fhirsrv database (no schema revision)")
        with closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)  # pages=-1: every page in one step, one read transaction
            # A self-contained file: opening it later (a restore, the sqlite3 shell) creates no
            # -wal and -shm files beside it; the server puts its database back in WAL mode.
            copy.execute("PRAGMA journal_mode=DELETE")
            _checked(copy, partial)
    return revision


def _sqlite_restore(url: str, source: Path, force: bool) -> str | None:
    target = _sqlite_path(url)
    # Read-only and immutable: reading the backup writes nothing beside it.
    with closing(
        sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    ) as backup_copy:
        revision = _revision_of(backup_copy, source)
        if revision is None:
            raise BackupError(f"{source} holds no fhirsrv database (no schema revision)")
        _checked(backup_copy, source)
        if not target.parent.is_dir():
            raise BackupError(f"no directory {target.parent} for the database {target.name}")
        with closing(sqlite3.connect(target, timeout=SQLITE_LOCK_WAIT)) as database:
            held = _revision_of(database, target)
            if held is not None and not force:
                raise BackupError(
                    f"{target} already holds a fhirsrv database (revision {held}): restore into an "
                    "empty one, or --force to replace it"
                )
            # Through SQLite, not a file copy: the target's own WAL and lock files stay coherent.
            backup_copy.backup(database)
    return revision


# -------------------------------------------------------------------------------- PostgreSQL
@dataclass(frozen=True)
class _PgTarget:
    """How the PostgreSQL client tools reach the database of a URL."""

    url: URL
    schema: str | None


_SEARCH_PATH = re.compile(r"search_path\s*=\s*\"?([^\s,\"]+)")


def _pg_target(url: str) -> _PgTarget:
    parsed: URL = make_url(normalise_url(url))
    options = parsed.query.get("options")
    text = " ".join(options) if isinstance(options, tuple) else options or ""
    found = _SEARCH_PATH.search(text)
    return _PgTarget(parsed.set(drivername="postgresql"), found.group(1) if found else None)


@contextmanager
def _dbname(target: _PgTarget) -> Iterator[str]:
    """The tools' --dbname: a libpq URI without the password, which is in a password file only
    this user may read (libpq's `passfile`), removed afterwards."""
    password = target.url.password
    if not password:
        yield target.url.render_as_string(hide_password=False)
        return
    with tempfile.TemporaryDirectory(prefix="fhirsrv-pg-") as private:
        passfile = Path(private) / "pgpass"
        escaped = str(password).replace("\\", "\\\\").replace(":", "\\:")
        descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(f"*:*:*:*:{escaped}\n")
        url = target.url.set(password=None).update_query_dict({"passfile": str(passfile)})
        yield url.render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client tools of the server's major "
            "version or a newer one (Debian: postgresql-client)"
        )
    return path


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(
            f"{Path(args[0]).name} failed: {' / '.join(lines[-3:]) or f'exit code {done.returncode}'}"
        )
    return done.stdout


def _pg_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return current(engine)
    finally:
        engine.dispose()


def _pg_dump(url: str, partial: Path) -> str | None:
    pg_dump = _tool("pg_dump")
    revision = _pg_revision(url)
    if revision is None:
        raise BackupError("the database holds no fhirsrv schema (no schema revision) to back up")
    target = _pg_target(url)
    with _dbname(target) as dbname:
        args = [pg_dump, "--format=custom", "--no-password", f"--file={partial}", f"--dbname={dbname}"]
        _run(args + ([f"--schema={target.schema}"] if target.schema else []))
    return revision


def _archived_schemas(pg_restore: str, source: Path) -> set[str]:
    """The schemas a custom-format archive creates (`pg_restore --list`: "… SCHEMA - name owner")."""
    listing = _run([pg_restore, "--list", str(source)])
    return {m.group(1) for m in re.finditer(r"^\d+;.*? SCHEMA - (\S+)", listing, re.MULTILINE)}


def _pg_restore(url: str, source: Path, force: bool) -> str | None:
    pg_restore = _tool("pg_restore")
    target = _pg_target(url)
    held = _pg_revision(url)
    if held is not None and not force:
        raise BackupError(
            f"the database already holds a fhirsrv schema (revision {held}): restore into an empty "
            "database or schema, or --force to replace it"
        )
    archived = _archived_schemas(pg_restore, source)
    wanted = target.schema or "public"
    if archived and wanted not in archived:
        raise BackupError(
            f"{source} holds the schema {', '.join(sorted(archived))}, the database URL names {wanted}: "
            "restore with that schema in the URL's search_path"
        )
    with _dbname(target) as dbname:
        args = [pg_restore, "--no-password", f"--dbname={dbname}", "--no-owner", "--exit-on-error"]
        _run(args + ["--single-transaction", "--clean", "--if-exists", str(source)])
    return _pg_revision(url)
