"""The demo region loads as it is into an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from fhirsrv.cli import main
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.schema import resource

ROOT = Path(__file__).resolve().parents[2]


def test_fhirsrv_load_stores_every_demo_resource(db_url: str):
    result = CliRunner().invoke(main, ["load", str(ROOT / "seed" / "demo"), "--database", db_url])
    assert result.exit_code == 0, result.output
    expected = json.loads((ROOT / "seed" / "expected-demo-counts.json").read_text(encoding="utf-8"))[
        "resources"
    ]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(select(resource.c.res_type, func.count()).group_by(resource.c.res_type)).all()
        )
    engine.dispose()
    assert stored == expected


def test_ror_partial_synchronisation_by_source_region_on_the_demo(client):
    """`HealthcareService?_tag=<TRE_R30>|53` (the ROR's partial sync) finds Brittany's services."""
    from fhirsrv.interactions.load import load_paths
    from fhirsrv.seeding.regions import R30_REGION

    services = client.application.extensions["fhirsrv"]
    load_paths(services, [ROOT / "seed" / "demo"])
    lines = (ROOT / "seed" / "demo" / "05-HealthcareService.ndjson").read_text(encoding="utf-8").splitlines()
    by_region: dict[str, int] = {}
    for line in lines:
        for tag in json.loads(line)["meta"]["tag"]:
            by_region[tag["code"]] = by_region.get(tag["code"], 0) + 1
    for region, expected in by_region.items():
        bundle = client.get(f"/fhir/HealthcareService?_tag={R30_REGION}|{region}&_summary=count").get_json()
        assert bundle["total"] == expected
    assert set(by_region) == {"53", "11"}
