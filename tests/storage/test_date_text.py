"""SQLite keeps dates as text: the rows written before dates had one fixed-width form are
rewritten by the migration, so date searches on an existing database find them again."""

from __future__ import annotations

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import text

from fhirsrv.storage.migrate import alembic_config, upgrade
from tests.conftest import ONLY_SQLITE
from tests.search.directory import load

LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"


def _ids(app: Flask, query: str) -> list[str]:
    res = app.test_client().get(f"/fhir/{query}")
    assert res.status_code == 200, res.get_json()
    return [e["resource"]["id"] for e in res.get_json().get("entry", [])]


@pytest.mark.parametrize("db_url", ONLY_SQLITE, indirect=True)  # PostgreSQL stores timestamps, not text
def test_upgrade_rewrites_dates_stored_without_their_microseconds(app: Flask):
    services = app.extensions["fhirsrv"]
    engine = services.engine
    verified = {"url": LIFECYCLE, "extension": [{"url": "lastVerified", "valueDate": "2026-07-03"}]}
    load(services, [{"resourceType": "HealthcareService", "id": "hs-1", "extension": [verified]}])
    with engine.begin() as conn:
        # What the driver wrote for midnight before: no fraction of a second.
        conn.execute(text("UPDATE idx_date SET low = substr(low, 1, 19) WHERE low LIKE '%.000000'"))
        conn.execute(text("UPDATE idx_sort SET value_date = substr(value_date, 1, 19)"))
        conn.execute(text("UPDATE resource SET last_updated = '2026-11-22 10:00:00'"))
        conn.execute(text("UPDATE resource_version SET last_updated = '2026-11-22 10:00:00'"))
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    assert _ids(app, "HealthcareService?last-verified=2026-07-03") == []

    upgrade(engine)

    assert _ids(app, "HealthcareService?last-verified=2026-07-03") == ["hs-1"]
    assert _ids(app, "HealthcareService?last-verified=lt2026-07-03") == []
    assert _ids(app, "HealthcareService?_sort=last-verified&last-verified=ge2026-07-03") == ["hs-1"]
    with engine.connect() as conn:
        history = conn.execute(text("SELECT last_updated FROM resource_version")).scalars().all()
    assert history == ["2026-11-22 10:00:00.000000"]
