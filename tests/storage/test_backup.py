"""`fhirsrv db backup` while the server writes, then `fhirsrv db restore` into an empty database:
the copy is the database as one commit left it, resource for resource and version for version,
and the restored server answers searches as the original does.

SQLite uses the sqlite3 online backup API; PostgreSQL pg_dump and pg_restore (the test is
skipped, saying so, only when those tools are not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from fhirsrv.app import create_app
from fhirsrv.cli import main
from fhirsrv.settings import PROJECT_ROOT, Settings
from fhirsrv.storage.engine import make_engine, normalise_url
from fhirsrv.storage.migrate import current
from fhirsrv.storage.schema import INDEX_TABLES, resource, resource_version
from tests.conftest import ONLY_POSTGRES, ONLY_SQLITE, PG_URL

DEMO = PROJECT_ROOT / "seed" / "demo"
BASE_URL = "http://fhir.test/fhir"
# The writer's structures: created, then renamed (two versions each), while the backup runs.
WRITER_PREFIX = "ecrivain-"
SEARCHES = (
    "HealthcareService?_count=500",
    "Organization?name=centre&_count=500",
    "Location?near=48.51|-2.76|40|km&_count=500",
    "HealthcareService?organization.name=centre&_count=500",
)


def _settings(url: str) -> Settings:
    return Settings.from_env(database_url=url, load_demo=False, base_url=BASE_URL, auth=False, load_workers=0)


def _load_directory(url: str, tmp_path: Path) -> None:
    """The Côtes-d'Armor structures of the demo region and all that belongs to them (a few
    hundred resources), then updates and one deletion through the API."""
    lines = [line for path in sorted(DEMO.glob("*.ndjson")) for line in path.open() if "-22-00" in line]
    directory = tmp_path / "directory.ndjson"
    directory.write_text("".join(lines))
    loaded = CliRunner().invoke(main, ["load", str(directory), "--database", url])
    assert loaded.exit_code == 0, loaded.output
    app = create_app(_settings(url))
    client = app.test_client()
    offers = [json.loads(line) for line in lines if '"HealthcareService"' in line[:60]]
    for offer in offers[:5]:
        renamed = {**offer, "name": offer["name"] + " (mis à jour)"}
        answer = client.put(f"/fhir/HealthcareService/{offer['id']}", json=renamed)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert client.delete(f"/fhir/HealthcareService/{offers[5]['id']}").status_code in (200, 204)
    app.extensions["fhirsrv"].engine.dispose()


@dataclass
class Writer:
    """Writes through the API until stopped: each structure created, then renamed."""

    url: str
    written: int = 0  # structures fully written (both versions committed)
    stop: threading.Event = field(default_factory=threading.Event)
    failure: list[str] = field(default_factory=list)
    progressed: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        app = create_app(_settings(self.url))
        client = app.test_client()
        try:
            while not self.stop.is_set():
                res_id = f"{WRITER_PREFIX}{self.written + 1}"
                body = {"resourceType": "Organization", "id": res_id, "name": f"Écrivain {self.written + 1}"}
                for name in (body["name"], body["name"] + " (renommé)"):
                    answer = client.put(f"/fhir/Organization/{res_id}", json={**body, "name": name})
                    if answer.status_code not in (200, 201):
                        self.failure.append(answer.get_data(as_text=True))
                        return
                with self.progressed:
                    self.written += 1
                    self.progressed.notify_all()
        finally:
            app.extensions["fhirsrv"].engine.dispose()

    def wait_for(self, count: int) -> None:
        with self.progressed:
            while self.written < count and not self.failure:
                self.progressed.wait(1)


def _rows(engine: Engine) -> dict[str, Counter[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: Counter(tuple(r) for r in conn.execute(select(table)))
            for table in (resource, resource_version, *INDEX_TABLES)
        }


def _answers(url: str) -> list[tuple[int, list[str]]]:
    app = create_app(_settings(url))
    client = app.test_client()
    found = []
    for query in SEARCHES:
        bundle = client.get(f"/fhir/{query}").get_json()
        found.append((bundle["total"], sorted(e["resource"]["id"] for e in bundle.get("entry", []))))
    app.extensions["fhirsrv"].engine.dispose()
    return found


def _backup_while_writing(source_url: str, backup_file: Path) -> tuple[int, int, Writer]:
    """Run `fhirsrv db backup` while the writer writes; (written before, written after, writer)."""
    writer = Writer(source_url)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        writer.wait_for(3)
        before = writer.written
        done = CliRunner().invoke(main, ["db", "backup", str(backup_file), "--database", source_url])
        after = writer.written
        writer.wait_for(after + 2)  # and it goes on writing after the backup
    finally:
        writer.stop.set()
        thread.join()
    assert not writer.failure, writer.failure
    assert done.exit_code == 0, done.output
    assert "backup of" in done.output and "at revision" in done.output
    return before, after, writer


def _check_restored(source_url: str, restored_url: str, before: int, after: int) -> None:
    source, restored = make_engine(source_url), make_engine(restored_url)
    try:
        assert current(restored) == current(source)
        have, had = _rows(restored), _rows(source)
    finally:
        source.dispose()
        restored.dispose()
    column = {c.name: i for i, c in enumerate(resource.c)}
    heads = {r[0]: r for r in have["resource"]}  # rid first
    names = {rid: row[2] for rid, row in heads.items()}  # res_id
    writers = sorted(
        int(name.removeprefix(WRITER_PREFIX)) for name in names.values() if WRITER_PREFIX in name
    )
    # A prefix of the writer's work, at least what it had committed when the backup started.
    assert writers == list(range(1, len(writers) + 1)) and before <= len(writers) <= after + 1
    # Every version in the copy is the source's; every resource's head is its last version there.
    assert not have["resource_version"] - had["resource_version"]
    versions = {(v[0], v[1]): v for v in have["resource_version"]}
    for rid, head in heads.items():
        version = versions[(rid, head[column["version_id"]])]
        assert version[7] == head[column["content"]] and version[4] == head[column["last_updated"]]
    # The directory loaded before the backup: identical, index rows included.
    settled = {rid for rid, name in names.items() if WRITER_PREFIX not in name}
    for name in ("resource", "resource_version", *(t.name for t in INDEX_TABLES)):
        mine = Counter({r: n for r, n in have[name].items() if r[0] in settled})
        theirs = Counter({r: n for r, n in had[name].items() if r[0] in settled})
        assert mine == theirs, name
    assert any(head[column["deleted"]] for head in heads.values()), "the deleted offer is in the copy"
    assert _answers(restored_url) == _answers(source_url)


@pytest.mark.parametrize("db_url", ONLY_SQLITE, indirect=True)
def test_sqlite_backup_while_writing_then_restore(db_url: str, tmp_path: Path) -> None:
    _load_directory(db_url, tmp_path)
    backup_file = tmp_path / "backups" / "fhirsrv.sqlite3"
    backup_file.parent.mkdir()
    before, after, _ = _backup_while_writing(db_url, backup_file)
    assert sorted(p.name for p in backup_file.parent.iterdir()) == ["fhirsrv.sqlite3"]  # no partial, no WAL

    restored_url = f"sqlite:///{tmp_path / 'restored' / 'fhirsrv.sqlite3'}"
    (tmp_path / "restored").mkdir()
    done = CliRunner().invoke(main, ["db", "restore", str(backup_file), "--database", restored_url])
    assert done.exit_code == 0 and "restored into" in done.output, done.output
    _check_restored(db_url, restored_url, before, after)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty PostgreSQL database: the URL names the schema the test's source uses."""
    name = f"fhirsrv_restore_{os.getpid()}"
    admin = make_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(normalise_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_postgresql_backup_while_writing_then_restore(db_url: str, tmp_path: Path, request: Any) -> None:
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: PostgreSQL backups need the client tools")
    empty = request.getfixturevalue("empty_database")
    _load_directory(db_url, tmp_path)
    backup_file = tmp_path / "fhirsrv.dump"
    before, after, _ = _backup_while_writing(db_url, backup_file)

    options = make_url(db_url).query["options"]
    restored_url = (
        make_url(empty).update_query_dict({"options": options}).render_as_string(hide_password=False)
    )
    done = CliRunner().invoke(main, ["db", "restore", str(backup_file), "--database", restored_url])
    assert done.exit_code == 0 and "restored into" in done.output, done.output
    _check_restored(db_url, restored_url, before, after)
