"""`fhirsrv db backup|restore`: what they refuse, and that each refusal is one clear line that
writes nothing (the copies themselves: tests/storage/test_backup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhirsrv.cli import main
from tests.conftest import ONLY_POSTGRES, ONLY_SQLITE


def _db(*args: str) -> Result:
    return CliRunner().invoke(main, ["db", *args])


@pytest.mark.parametrize("db_url", ONLY_SQLITE, indirect=True)
def test_a_backup_never_replaces_a_file_unless_forced(db_url: str, tmp_path: Path):
    target = tmp_path / "copy.sqlite3"
    target.write_text("an earlier backup")
    refused = _db("backup", str(target), "--database", db_url)
    assert refused.exit_code == 1
    assert f"error: {target} exists: choose another file name, or --force to replace it" in refused.output
    assert target.read_text() == "an earlier backup"
    forced = _db("backup", str(target), "--force", "--database", db_url)
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes().startswith(b"SQLite format 3\x00")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_backup_of_no_database_says_so_and_writes_nothing(tmp_path: Path):
    missing = tmp_path / "nowhere.sqlite3"
    result = _db("backup", str(tmp_path / "copy.sqlite3"), "--database", f"sqlite:///{missing}")
    assert result.exit_code == 1 and f"error: no SQLite database at {missing}" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_backup_into_a_missing_directory_says_so(db_url: str, tmp_path: Path):
    result = _db("backup", str(tmp_path / "no" / "copy"), "--database", db_url)
    assert result.exit_code == 1 and f"error: no directory {tmp_path / 'no'}" in result.output


@pytest.mark.parametrize("db_url", ONLY_SQLITE, indirect=True)
def test_a_restore_never_replaces_a_database_unless_forced(db_url: str, tmp_path: Path):
    backup = tmp_path / "copy.sqlite3"
    assert _db("backup", str(backup), "--database", db_url).exit_code == 0
    refused = _db("restore", str(backup), "--database", db_url)
    assert refused.exit_code == 1
    assert "already holds a fhirsrv database (revision" in refused.output and "--force" in refused.output
    forced = _db("restore", str(backup), "--force", "--database", db_url)
    assert forced.exit_code == 0 and "restored into" in forced.output, forced.output


def test_a_restore_names_what_the_file_is_not(db_url: str, tmp_path: Path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a backup")
    result = _db("restore", str(text_file), "--database", db_url)
    assert result.exit_code == 1
    assert "is neither a SQLite database nor a pg_dump custom-format archive" in result.output
    archive = tmp_path / "fhirsrv.dump"
    archive.write_bytes(b"PGDMP\x01\x0e\x00")
    into_sqlite = _db("restore", str(archive), "--database", f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert into_sqlite.exit_code == 1
    assert "is a PostgreSQL archive (pg_dump): restore it into a PostgreSQL database" in into_sqlite.output
    assert not (tmp_path / "new.sqlite3").exists()
    missing = _db("restore", str(tmp_path / "none.dump"), "--database", db_url)
    assert missing.exit_code == 1 and f"error: no backup file {tmp_path / 'none.dump'}" in missing.output


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_postgresql_backup_without_pg_dump_says_what_to_install(db_url: str, tmp_path: Path):
    """Run as an operator would, with a PATH that holds no PostgreSQL client."""
    bare = tmp_path / "bin"
    bare.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "db", "backup", str(tmp_path / "x.dump"), "--database", db_url],
        env={"PATH": str(bare), "FHIRSRV_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "error: pg_dump not found on PATH: install the PostgreSQL client tools" in result.stderr
    assert not (tmp_path / "x.dump").exists()


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_sqlite_file_is_not_restored_into_postgresql(db_url: str, tmp_path: Path):
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(b"SQLite format 3\x00" + bytes(100))
    result = _db("restore", str(copy), "--database", db_url)
    assert result.exit_code == 1
    assert "is a SQLite database: restore it into a SQLite database" in result.output



def test_two_upgrades_started_together_both_succeed(db_url: str):
    """Containers started together each run `fhirsrv db upgrade` on the same empty database: one
    upgrades, the other waits and finds the work done, instead of failing half-way on the
    tables the first has just created."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import fhirsrv.auth.tables  # noqa: F401  (their tables hang on the same metadata)
    import fhirsrv.workflow.tables  # noqa: F401
    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.migrate import alembic_config, current, head_revisions
    from fhirsrv.storage.schema import metadata

    empty = make_engine(db_url)
    with empty.begin() as conn:
        config = alembic_config(empty)
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    command_line = [sys.executable, "-m", "fhirsrv.cli", "db", "upgrade", "--database", db_url]
    runs = [subprocess.Popen(command_line, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert current(empty) in head_revisions()
    with empty.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    empty.dispose()
