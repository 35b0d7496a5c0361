"""The directory's identifiers on the server's own write paths: `fhirsrv load` (in-process and
through the worker processes) refuses a duplicate within a file and across files, and fills
the rows later writes are checked against; a database written before the rule is filled at
start-up, the oldest holder keeping a shared identifier."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select

from fhirsrv.access.principal import SERVER
from fhirsrv.app import build_services, create_app
from fhirsrv.errors import FhirError
from fhirsrv.interactions import load, writes
from fhirsrv.interactions.context import Services
from fhirsrv.settings import Settings
from fhirsrv.storage import changes, repository
from fhirsrv.storage.migrate import alembic_config, upgrade
from fhirsrv.storage.schema import resource

OFFER = "https://sos.example.org/fhir/sid/sos-offer"
FHIR = "application/fhir+json"


def _services(db_url: str, workers: int = 0) -> Services:
    return build_services(
        Settings.from_env(database_url=db_url, load_demo=False, auth=False, load_workers=workers)
    )


def _offer(sid: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": sid,
        "identifier": [{"system": OFFER, "value": value}],
        "providedBy": {"reference": "Organization/org-1"},
        "name": f"Offre {sid}",
    }


def _write(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


def _count(services: Services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resource)).scalar_one()


@pytest.fixture(params=["in-process", "workers"])
def load_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many worker processes the load uses (0: in-process); workers take every file."""
    if request.param == "workers":
        monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)
        return 1
    return 0


def test_a_file_giving_one_identifier_twice_loads_nothing(db_url: str, tmp_path: Path, load_path: int):
    services = _services(db_url, load_path)
    organization = {"resourceType": "Organization", "id": "org-1", "name": "Structure"}
    offers = [_offer(f"hs-{i}", f"SOS-{i}") for i in range(30)]
    offers[25]["identifier"][0]["value"] = "SOS-3"
    path = _write(tmp_path / "directory.ndjson", organization, *offers)
    with pytest.raises(load.LoadError, match=rf"hs-25: the identifier {OFFER}\|SOS-3 is already held by HealthcareService/hs-3"):
        load.load_paths(services, [path])
    assert _count(services) == 0


def test_a_second_file_cannot_take_an_identifier_of_the_first(db_url: str, tmp_path: Path, load_path: int):
    services = _services(db_url, load_path)
    organization = {"resourceType": "Organization", "id": "org-1", "name": "Structure"}
    first = _write(tmp_path / "a.ndjson", organization, _offer("hs-1", "SOS-1"), _offer("hs-2", "SOS-2"))
    assert load.load_paths(services, [first]).counts == {"Organization": 1, "HealthcareService": 2}
    second = _write(tmp_path / "b.ndjson", _offer("hs-9", "SOS-9"), _offer("hs-10", "SOS-2"))
    with pytest.raises(load.LoadError, match=rf"hs-10: the identifier {OFFER}\|SOS-2 is already held by HealthcareService/hs-2"):
        load.load_paths(services, [second])
    assert _count(services) == 3
    # Reloading the first file is not a duplicate: each resource holds its own identifiers.
    assert load.load_paths(services, [first]).unchanged == 3
    # An existing resource of the file taking another's identifier is refused too.
    moved = _write(tmp_path / "c.ndjson", _offer("hs-1", "SOS-2"))
    with pytest.raises(load.LoadError, match=rf"{OFFER}\|SOS-2"):
        load.load_paths(services, [moved])

    # What was loaded is what later writes are checked against.
    app = create_app(services.settings)
    answer = app.test_client().post("/fhir/HealthcareService", json=_offer("x", "SOS-1"), headers={"Content-Type": FHIR})
    assert answer.status_code == 409
    app.extensions["fhirsrv"].engine.dispose()


def test_a_database_from_before_the_rule_is_filled_at_start_up(
    db_url: str, caplog: pytest.LogCaptureFixture
):
    """Entries stored before the rule may share an identifier: the oldest keeps it, the other is
    reported, and a new holder is refused at once."""
    services = _services(db_url)
    config = alembic_config(services.engine)
    with services.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    with services.engine.begin() as conn:  # written the way the server wrote before the rule
        for sid, value in (("hs-old", "SOS-1"), ("hs-young", "SOS-1"), ("hs-other", "SOS-2")):
            repository.create(conn, _offer(sid, value), sid)
        changes.discard_notes(conn)
    upgrade(services.engine)
    services.engine.dispose()

    with caplog.at_level(logging.WARNING, logger="fhirsrv"):
        started = _services(db_url)
    assert [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()] == [
        f"duplicate directory identifier: HealthcareService/hs-young carries the identifier {OFFER}|SOS-1 "
        "of HealthcareService/hs-old: give it another one"
    ]
    with pytest.raises(FhirError, match=r"SOS-2 is already held"), started.engine.begin() as conn:
        writes.create(started, conn, _offer("hs-new", "SOS-2"), "hs-new", actor=SERVER)
    with pytest.raises(FhirError, match=r"SOS-1 is already held"), started.engine.begin() as conn:
        young = repository.get_current(conn, "HealthcareService", "hs-young")
        assert young is not None
        writes.replace(started, conn, young, _offer("hs-young", "SOS-1") | {"name": "x"}, actor=SERVER)
    with started.engine.begin() as conn:
        young = repository.get_current(conn, "HealthcareService", "hs-young")
        assert young is not None
        writes.replace(started, conn, young, _offer("hs-young", "SOS-3"), actor=SERVER)
        old = repository.get_current(conn, "HealthcareService", "hs-old")
        assert old is not None
        writes.replace(started, conn, old, _offer("hs-old", "SOS-1") | {"name": "x"}, actor=SERVER)
    started.engine.dispose()
