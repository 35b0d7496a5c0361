"""The bulk loader: the worker-process path stores exactly what the in-process path stores.

Both paths load the same generated directory into two databases; every resource, version and
index row must match (row ids and timestamps aside). Then the properties a loader must keep:
a bad line anywhere writes nothing of its file, a reload writes nothing new, a changed resource
becomes a new version, and a SearchParameter loaded first indexes what follows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from fhirsrv.app import build_services
from fhirsrv.interactions import load
from fhirsrv.interactions.context import Services
from fhirsrv.search.scope import UNRESTRICTED
from fhirsrv.seeding.generate import generate
from fhirsrv.settings import Settings
from fhirsrv.storage.schema import INDEX_TABLES, entry_access, resource, resource_version, structure_territory
from tests.conftest import ONLY_POSTGRES

DEMO = Path(__file__).resolve().parents[2] / "seed" / "demo"


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate(resources=400, seed=3, out_dir=out)
    return out


def _services(db_url: str, workers: int) -> Services:
    return build_services(
        Settings.from_env(database_url=db_url, load_demo=False, auth=False, load_workers=workers)
    )


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every NDJSON file through the workers, however small."""
    monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)


def _snapshot(engine: Engine) -> tuple[dict, Counter]:
    """Stored resources (meta stamps aside) and index rows, keyed by type/id instead of row id."""
    with engine.connect() as conn:
        keys = {r.rid: f"{r.res_type}/{r.res_id}" for r in conn.execute(select(resource))}
        stored = {}
        for row in conn.execute(select(resource)):
            content = json.loads(row.content)
            content["meta"].pop("lastUpdated")
            stored[keys[row.rid]] = (row.version_id, content)
        versions = conn.execute(select(resource_version.c.rid)).all()
        assert len(versions) == len(keys)
        rows: Counter = Counter()
        for table in INDEX_TABLES:
            for row in conn.execute(select(table)):
                values = tuple(v for c, v in zip(table.columns, row, strict=True) if c.name != "rid")
                if row.param == "_lastUpdated":
                    values = values[:2]  # the load's own clock
                rows[(table.name, keys[row.rid], values)] += 1
    return stored, rows


def test_parallel_load_stores_what_the_serial_load_stores(
    db_url: str, tmp_path: Path, directory: Path, parallel: None, monkeypatch: pytest.MonkeyPatch
):
    serial_url = f"sqlite:///{tmp_path}/serial.db"
    serial = _services(serial_url, workers=0)
    serial_report = load.load_paths(serial, [directory])

    fast = _services(db_url, workers=2)
    fast_report = load.load_paths(fast, [directory])

    assert fast_report.counts == serial_report.counts
    assert sum(fast_report.counts.values()) > 350
    assert _snapshot(fast.engine) == _snapshot(serial.engine)


def test_text_copy_must_escape_loads_as_written(db_url: str, tmp_path: Path, parallel: None):
    """On PostgreSQL the workers write index rows as COPY text: a backslash, tab, newline or
    carriage return in a value, or a value that reads like COPY's NULL, is stored as written;
    text longer than its column is cut to it, as the in-process path cuts it."""
    names = ["Centre\\Nord", "Soins\tpalliatifs", "Ligne 1\nLigne 2", "Retour\r", "\\N", "N\\"]
    data = tmp_path / "orgs.ndjson"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "resourceType": "Organization",
                    "id": f"esc-{i}",
                    "name": name,
                    "alias": [name, "Très long nom\t" * 60],
                    "identifier": [{"system": "urn:x", "value": f"{i}\\" + "9" * 300}],
                }
            )
            + "\n"
            for i, name in enumerate(names)
        )
    )
    serial = _services(f"sqlite:///{tmp_path}/serial.db", workers=0)
    load.load_paths(serial, [data])
    fast = _services(db_url, workers=2)
    load.load_paths(fast, [data])
    assert _snapshot(fast.engine) == _snapshot(serial.engine)
    with fast.engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT DISTINCT rid, value_exact FROM idx_string"
                " WHERE param = 'name' AND value_exact NOT LIKE 'Tr%' ORDER BY rid"
            )
        ).all()
        assert [value for _, value in stored] == names


def test_a_bad_line_deep_in_a_file_writes_nothing_of_it(
    db_url: str, tmp_path: Path, directory: Path, parallel: None
):
    lines = (directory / "05-HealthcareService.ndjson").read_text().splitlines()
    broken = json.loads(lines[-3])
    broken["active"] = "sometimes"
    lines[-3] = json.dumps(broken)
    bad = tmp_path / "services.ndjson"
    bad.write_text("\n".join(lines) + "\n")
    services = _services(db_url, workers=2)
    with pytest.raises(load.LoadError, match=rf"services.ndjson, line {len(lines) - 2}: .*active"):
        load.load_paths(services, [bad])
    with services.engine.connect() as conn:
        assert conn.execute(select(resource.c.rid)).first() is None


def test_reload_writes_nothing_and_a_change_makes_a_new_version(db_url: str, tmp_path: Path, parallel: None):
    path = tmp_path / "orgs.ndjson"
    orgs = [{"resourceType": "Organization", "id": f"o{i}", "name": f"Structure {i}"} for i in range(1200)]
    path.write_text("\n".join(json.dumps(o) for o in orgs) + "\n")
    services = _services(db_url, workers=2)
    first = load.load_paths(services, [path])
    assert first.counts == {"Organization": 1200}

    again = load.load_paths(services, [path])
    assert again.unchanged == 1200 and not again.counts

    orgs[700]["name"] = "Structure renommée"
    orgs.append({"resourceType": "Organization", "name": "Sans identifiant"})
    orgs.append({**orgs[5], "name": "Même id, deux fois dans le fichier"})
    path.write_text("\n".join(json.dumps(o) for o in orgs) + "\n")
    third = load.load_paths(services, [path])
    assert third.counts == {"Organization": 3} and third.unchanged == 1199
    with services.engine.connect() as conn:
        renamed = conn.execute(select(resource).where(resource.c.res_id == "o700")).one()
        assert renamed.version_id == 2 and "renommée" in renamed.content
        assert conn.execute(select(resource).where(resource.c.res_id == "o5")).one().version_id == 2
        assert len(conn.execute(select(resource.c.rid)).all()) == 1201


def test_a_search_parameter_loaded_first_indexes_what_follows(db_url: str, tmp_path: Path, parallel: None):
    (tmp_path / "a-parameter.json").write_text(
        json.dumps(
            {
                "resourceType": "SearchParameter",
                "id": "organization-alias",
                "url": "https://sos.example.org/fhir/SearchParameter/organization-alias",
                "name": "alias",
                "status": "active",
                "description": "Another name of the structure",
                "code": "alias",
                "base": ["Organization"],
                "type": "string",
                "expression": "Organization.alias",
            }
        )
    )
    orgs = [{"resourceType": "Organization", "id": f"o{i}", "alias": [f"Surnom {i}"]} for i in range(600)]
    (tmp_path / "b-orgs.ndjson").write_text("\n".join(json.dumps(o) for o in orgs) + "\n")
    services = _services(db_url, workers=2)
    load.load_paths(services, [tmp_path])
    request = services.search.prepare("Organization", [("alias:exact", "Surnom 59")], strict=True)
    with services.engine.connect() as conn:
        page = services.search.execute(conn, request, UNRESTRICTED)
    assert sorted(r.res_id for r in page.matches) == ["o59"]


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_postgresql_has_statistics_of_what_a_load_wrote_whatever_its_size(db_url: str):
    """The demo region (3,525 resources) used to be left without statistics: the planner then
    ran a `_has` search for minutes and a chained `near` at seven times its analysed time."""
    services = _services(db_url, workers=0)  # planner statistics are PostgreSQL's (pg_class.reltuples)
    report = load.load_paths(services, [DEMO])
    with services.engine.connect() as conn:
        written = [
            t.name
            for t in (resource, resource_version, entry_access, structure_territory, *INDEX_TABLES)
            if conn.execute(select(t).limit(1)).first() is not None
        ]
        reltuples = dict(
            conn.execute(
                text(
                    "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).all()
        )
    assert len(written) > 10
    never_analysed = [name for name in written if reltuples[name] < 0]
    assert not never_analysed
    assert reltuples["resource"] == sum(report.counts.values())


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"active": "yes"}, "Organization.active"),
        ({"alias": []}, "Organization.alias"),
        ({"name": "x" * (1024 * 1024 + 1)}, "Organization.name"),
    ],
)
def test_json_the_models_would_coerce_stops_its_file(
    db_url: str, tmp_path: Path, parallel: None, workers: int, change: dict, where: str
):
    (tmp_path / "a-good.ndjson").write_text(
        json.dumps({"resourceType": "Organization", "id": "ok", "name": "Chargée"}) + "\n"
    )
    orgs = [{"resourceType": "Organization", "id": f"o{i}", "name": f"Structure {i}"} for i in range(30)]
    orgs[17].update(change)
    (tmp_path / "b-orgs.ndjson").write_text("\n".join(json.dumps(o) for o in orgs) + "\n")
    services = _services(db_url, workers=workers)
    with pytest.raises(load.LoadError, match=rf"b-orgs.ndjson, line 18: {where}: "):
        load.load_paths(services, [tmp_path])
    with services.engine.connect() as conn:
        assert [r.res_id for r in conn.execute(select(resource.c.res_id))] == ["ok"]


def test_a_bundle_file_with_a_string_for_a_decimal_writes_nothing(db_url: str, tmp_path: Path):
    place = {"resourceType": "Location", "id": "l1", "position": {"latitude": "48.1", "longitude": -1.68}}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Organization", "id": "o1", "name": "x"}},
            {"resource": place},
        ],
    }
    (tmp_path / "places.json").write_text(json.dumps(bundle))
    services = _services(db_url, workers=0)
    with pytest.raises(load.LoadError, match=r"places.json, entry 1: Location.position.latitude: "):
        load.load_paths(services, [tmp_path])
    with services.engine.connect() as conn:
        assert conn.execute(select(resource.c.rid)).first() is None


def test_an_upgrade_adds_the_shipped_content_a_database_lacks_and_keeps_what_it_holds(
    db_url: str, engine: Engine
):
    """`fhirsrv db upgrade`'s content step: what the database never held is added; a shipped
    resource an administrator changed or deleted stays as they left it."""
    services = _services(db_url, 0)
    assert not load.load_missing_conformance(services).counts, "an empty database waits for its first start"
    loaded = load.load_paths(services, [DEMO / "01-Organization.ndjson"])
    assert loaded.counts["Organization"] > 1
    first = load.load_missing_conformance(services)
    assert first.counts["CodeSystem"] > 1 and first.counts["StructureDefinition"] > 1
    with engine.begin() as conn:
        changed, deleted = conn.execute(select(resource).where(resource.c.res_type == "CodeSystem")).all()[:2]
        conn.execute(resource.update().where(resource.c.rid == changed.rid).values(content='{"edited": 1}'))
        conn.execute(
            resource.update().where(resource.c.rid == deleted.rid).values(deleted=True, content=None)
        )
    again = load.load_missing_conformance(services)
    assert not again.counts and again.unchanged == sum(first.counts.values())
    with engine.connect() as conn:
        both = select(resource).where(resource.c.rid.in_([changed.rid, deleted.rid]))
        rows = {r.rid: r for r in conn.execute(both)}
    assert rows[changed.rid].content == '{"edited": 1}' and rows[deleted.rid].deleted
    services.engine.dispose()
