"""What an export writes: the demo region, exported and loaded into an empty server with
`fhirsrv load`, comes back resource for resource; and an export shows one instant of the
directory, whatever is written meanwhile. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from fhirsrv.access.principal import SERVER
from fhirsrv.api.bulk_export import worker
from fhirsrv.app import create_app
from fhirsrv.cli import main
from fhirsrv.interactions import writes
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.jsonfmt import loads, utcnow
from fhirsrv.storage.schema import live, resource
from fhirsrv.sync import export_jobs
from fhirsrv.sync.export_request import ExportRequest
from fhirsrv.sync.export_writer import Cancelled, write_export
from tests.auth.conftest import Clients, auth_settings, organization, service
from tests.sync.exports import export, local


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    app = create_app(auth_settings(db_url))
    yield app
    worker(app).join(60)
    app.extensions["fhirsrv"].engine.dispose()


def _stored(url: str) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    """Every live resource: its content without the server's own meta, and its visibility."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(resource.c.res_type, resource.c.res_id, resource.c.content, resource.c.visibility).where(
                live(resource)
            )
        ).all()
    engine.dispose()
    found = {}
    for res_type, res_id, content, visibility in rows:
        body = loads(content)
        meta = {k: v for k, v in body.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
        found[(res_type, res_id)] = ({**body, "meta": meta}, visibility)
    return found


def test_the_demo_exported_then_loaded_into_an_empty_server_is_the_same(
    app: Flask, db_url: str, target_url: str, tmp_path: Path
) -> None:
    services = app.extensions["fhirsrv"]
    report = load_initial_content(services, demo=True)
    assert report is not None and report.counts["HealthcareService"] > 1000
    admin = Clients(app).headers()
    web = app.test_client()
    found = export(web, "/fhir/$export", admin)
    folder = tmp_path / "export"
    folder.mkdir()
    for item in found["output"]:  # as a client downloads them, named as the server names them
        response = web.get(local(item["url"]), headers=admin)
        assert response.status_code == 200
        (folder / item["url"].rsplit("/", 1)[1]).write_bytes(response.get_data())
    loaded = CliRunner().invoke(main, ["load", str(folder), "--database", target_url])
    assert loaded.exit_code == 0, loaded.output
    source, target = _stored(db_url), _stored(target_url)
    assert sum(item["count"] for item in found["output"]) == len(source)
    assert target.keys() == source.keys()
    for key, (body, visibility) in source.items():
        assert target[key][0] == body, key
        # The loaded server derives the same access facts: it shows the public what the source did.
        assert target[key][1] == visibility, key


def test_an_export_shows_the_directory_as_one_instant_left_it(app: Flask, tmp_path: Path) -> None:
    """A resource written while the export runs is not in its files, and commits after its
    transactionTime: the next export `_since` that instant has it."""
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        writes.create(services, conn, organization("org-1", "29"), "org-1", actor=SERVER)
    request = ExportRequest(("Organization", "HealthcareService"))
    job = export_jobs.create(
        services.engine, services.settings, SERVER, "http://fhir.test/fhir/$export", request
    )
    written: list[str] = []

    def progress(text: str) -> bool:
        if not written:  # the export has begun: another client writes an offer now
            with services.engine.begin() as conn:
                stored = writes.create(
                    services, conn, service("hs-new", "org-1", "loc-x"), "hs-new", actor=SERVER
                )
            written.append(stored.res_id)
        return True

    when_started = utcnow()
    folder = tmp_path / "instant"
    folder.mkdir()
    when, files = write_export(services, job, folder, progress)
    assert written == ["hs-new"]
    assert [(f.res_type, f.count) for f in files] == [("Organization", 1)]
    assert {f.name for f in files} == {p.name for p in folder.iterdir()}
    assert when <= when_started  # the commit of org-1, the last change the snapshot holds
    # The next export since that instant has what the first one could not show (and the
    # change of that very instant again).
    later = export_jobs.create(
        services.engine,
        services.settings,
        SERVER,
        "http://fhir.test/fhir/$export",
        ExportRequest(request.types, when),
    )
    (tmp_path / "since").mkdir()
    _, files = write_export(services, later, tmp_path / "since", lambda text: True)
    assert [(f.res_type, f.count) for f in files] == [("Organization", 1), ("HealthcareService", 1)]


def test_an_export_stops_when_its_job_is_no_longer_wanted(app: Flask, tmp_path: Path) -> None:
    services = app.extensions["fhirsrv"]
    request = ExportRequest(("Organization",))
    job = export_jobs.create(
        services.engine, services.settings, SERVER, "http://fhir.test/fhir/$export", request
    )
    with pytest.raises(Cancelled):
        write_export(services, job, tmp_path, lambda text: False)
