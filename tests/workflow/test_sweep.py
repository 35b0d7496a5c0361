"""`fhirsrv sweep`: idempotent, safe with two processes at once, and usable from cron."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from fhirsrv.access.principal import SERVER
from fhirsrv.cli import main
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from fhirsrv.storage.schema import outbox, resource_version
from fhirsrv.wiring import build_services
from fhirsrv.workflow import runner
from fhirsrv.workflow.sweep import sweep

LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
VERIFIED = "2025-01-10"


def _structure(oid: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "active": True,
        "name": f"Structure {oid}",
        "telecom": [{"system": "email", "value": f"{oid}@example.org"}],
        "address": [{"postalCode": "29200", "city": "Brest"}],
        "extension": [
            {
                "url": LIFECYCLE,
                "extension": [
                    {"url": "status", "valueCode": "published"},
                    {"url": "lastVerified", "valueDate": VERIFIED},
                ],
            }
        ],
    }


def test_two_sweeps_at_once_move_and_tell_each_structure_once(db_url: str) -> None:
    services = build_services(Settings.from_env(database_url=db_url, load_demo=False))
    with services.engine.begin() as conn:
        for k in range(12):
            writes.create(services, conn, _structure(f"org-{k}"), f"org-{k}", actor=SERVER)
    now = datetime.fromisoformat(VERIFIED) + timedelta(days=400)
    reports = []

    def run() -> None:
        reports.append(sweep(services, runner.procedure(services), now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.requested for r in reports) == 12
    with services.engine.connect() as conn:
        versions = conn.execute(
            select(func.count()).select_from(resource_version).where(resource_version.c.res_type == "Organization")
        ).scalar_one()
        messages = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    assert versions == 24  # each structure: its creation and one move
    assert messages == 12  # one reminder each
    again = sweep(services, runner.procedure(services), now)
    assert again.requested == 0 and again.examined == 12
    services.engine.dispose()


def test_the_sweep_command_reports_what_it_did(db_url: str) -> None:
    services = build_services(Settings.from_env(database_url=db_url, load_demo=False))
    with services.engine.begin() as conn:
        writes.create(services, conn, _structure("org-a"), "org-a", actor=SERVER)
    services.engine.dispose()
    when = (datetime.fromisoformat(VERIFIED) + timedelta(days=366)).isoformat() + "+00:00"
    result = CliRunner().invoke(main, ["sweep", "--database", db_url, "--now", when])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["examined"] == 1 and report["asked_to_verify"] == 1
    result = CliRunner().invoke(main, ["sweep", "--database", db_url, "--now", when])
    assert json.loads(result.output.strip().splitlines()[-1])["asked_to_verify"] == 0
