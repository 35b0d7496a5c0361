"""A database of the first release (revision 0001), upgraded by `fhirsrv db upgrade`, keeps every
resource and version as stored, and ends with the rows a fresh load of the same writes produces
now: index rows, access facts, identifiers. Searches, reads and histories then answer alike.

The first release cannot be run here, so its database is written as it stored it: the schema of
revision 0001 (Alembic), then rows in that revision's table shapes (reflected from the database,
not this code's tables): resources and their versions stamped as its repository did, and the
index rows of its rules — the R4 search parameters only, since it shipped no SOS or ROR ones.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, MetaData, select, text

from fhirsrv.app import create_app
from fhirsrv.cli import main
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.extract import extract
from fhirsrv.search.registry import build_registry
from fhirsrv.settings import PROJECT_ROOT, Settings
from fhirsrv.storage.engine import make_engine, normalise_url
from fhirsrv.storage.jsonfmt import dumps
from fhirsrv.storage.migrate import current, upgrade
from fhirsrv.storage.repository import stamp
from fhirsrv.storage.schema import (
    INDEX_TABLES,
    code_closure,
    entry_access,
    resource,
    resource_identifier,
    resource_version,
    structure_territory,
)
from fhirsrv.wiring import build_services
from tests.conftest import BACKENDS, PG_URL

FIRST_RELEASE = "0001"
BASE_URL = "http://fhir.test/fhir"
DEMO = PROJECT_ROOT / "seed" / "demo"
# Structures of the demo region in five lifecycle states: published, verification-pending,
# delisted, submitted, draft.
STRUCTURES = ("org-22-0001", "org-22-0008", "org-29-0009", "org-29-0014", "org-29-0024")
OWNER = {"HealthcareService": "providedBy", "Location": "managingOrganization"}
OWNER |= {"Endpoint": "managingOrganization", "PractitionerRole": "organization"}


@dataclass(frozen=True)
class Write:
    """One write of the history both databases go through; `content` None: a deletion."""

    res_type: str
    res_id: str
    content: dict[str, Any] | None


# ------------------------------------------------------------------------------ the data
def _directory() -> list[dict[str, Any]]:
    """The chosen structures, everything that belongs to them, and their roles' people."""
    everything = [json.loads(line) for path in sorted(DEMO.glob("*.ndjson")) for line in path.open()]
    chosen = [
        r
        for r in everything
        if r["id"] in STRUCTURES
        or r["resourceType"] in OWNER
        and (r.get(OWNER[r["resourceType"]]) or {}).get("reference", "").removeprefix("Organization/")
        in STRUCTURES
    ]
    people = {
        r["practitioner"]["reference"].removeprefix("Practitioner/")
        for r in chosen
        if r["resourceType"] == "PractitionerRole" and "practitioner" in r
    }
    return chosen + [r for r in everything if r["resourceType"] == "Practitioner" and r["id"] in people]


def _history(directory: list[dict[str, Any]]) -> list[Write]:
    """Creations, then updates (twice for one structure), deletions (a public offer, a
    delisted structure's place, a draft structure) and an offer deleted then created again."""
    by_key = {(r["resourceType"], r["id"]): r for r in directory}
    writes = [Write(r["resourceType"], r["id"], r) for r in directory]

    def first(res_type: str, structure: str) -> dict[str, Any]:
        owner = OWNER[res_type]
        return next(
            r
            for (t, _), r in by_key.items()
            if t == res_type and r[owner]["reference"] == f"Organization/{structure}"
        )

    def renamed(res: dict[str, Any], suffix: str) -> dict[str, Any]:
        return {**res, "name": f"{res['name']} {suffix}"}

    org = by_key[("Organization", "org-22-0001")]
    offers = [
        r
        for r in directory
        if r["resourceType"] == "HealthcareService"
        and r["providedBy"]["reference"] == "Organization/org-22-0008"
    ]
    writes += [
        Write("Organization", org["id"], renamed(org, "(Brest)")),
        Write("Organization", org["id"], renamed(org, "(Brest, site principal)")),
        Write("HealthcareService", offers[0]["id"], renamed(offers[0], "- consultations")),
        Write("HealthcareService", offers[1]["id"], None),
        Write("Location", first("Location", "org-29-0009")["id"], None),
        Write("Organization", "org-29-0024", None),
        Write("HealthcareService", offers[2]["id"], None),
        Write("HealthcareService", offers[2]["id"], renamed(offers[2], "(reprise)")),
    ]
    return writes


# ------------------------------------------------------------------- the first release's side
def _first_release_registry(tmp_path: Path) -> Any:
    """The first release's search parameters: R4's only (profiles/r4), none of profiles/sos."""
    root = tmp_path / "first-release-content"
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / "r4").symlink_to(PROJECT_ROOT / "profiles" / "r4")
    settings = Settings.from_env(database_url="sqlite://", content_root=root, base_url=BASE_URL)
    return build_registry(settings, SUPPORTED_TYPES)


def _write_first_release(url: str, writes: list[Write], registry: Any) -> list[dict[str, Any]]:
    """The database as the first release left it; returns the version rows written."""
    engine = make_engine(url)
    upgrade(engine, FIRST_RELEASE)
    tables = MetaData()
    with engine.connect() as conn:
        tables.reflect(conn)
    res, ver = tables.tables["resource"], tables.tables["resource_version"]
    # Milliseconds, as the server stamps them; the first on a whole second.
    when = datetime(2026, 1, 5, 8, 0, 0)
    current_rows: dict[tuple[str, str], dict[str, Any]] = {}
    versions: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for write in writes:
            key = (write.res_type, write.res_id)
            before = current_rows.get(key)
            number = 1 if before is None else before["version_id"] + 1
            body = None if write.content is None else dumps(stamp(write.content, write.res_id, number, when))
            row = {
                "res_type": write.res_type,
                "res_id": write.res_id,
                "version_id": number,
                "last_updated": when,
                "deleted": write.content is None,
                "content": body,
            }
            if before is None:
                row["rid"] = conn.execute(res.insert().values(row).returning(res.c.rid)).scalar_one()
            else:
                row["rid"] = before["rid"]
                conn.execute(res.update().where(res.c.rid == row["rid"]).values(row))
            method = "create" if before is None else "delete" if write.content is None else "update"
            conn.execute(ver.insert().values({**row, "method": method}))
            current_rows[key] = row
            versions.append({**row, "method": method})
            when += timedelta(seconds=7, milliseconds=123)
        for row in current_rows.values():
            if row["deleted"]:
                continue
            rows = extract(registry, json.loads(row["content"]), BASE_URL)
            for name, index_rows in rows.items():
                table = tables.tables[name]
                conn.execute(
                    table.insert(),
                    [{**r, "rid": row["rid"], "res_type": row["res_type"]} for r in index_rows],
                )
    engine.dispose()
    return versions


# ------------------------------------------------------------------------- the fresh side
def _settings(url: str, *, auth: bool) -> Settings:
    return Settings.from_env(database_url=url, load_demo=False, base_url=BASE_URL, auth=auth, load_workers=0)


def _load_fresh(url: str, writes: list[Write], tmp_path: Path) -> None:
    """A first start at head (its conformance and terminology content, no demo), then the same
    writes: the creations by `fhirsrv load`, the rest through the API."""
    services = build_services(_settings(url, auth=False))
    load_initial_content(services, demo=False)
    services.engine.dispose()
    created: set[tuple[str, str]] = set()
    first, rest = [], []
    for write in writes:
        key = (write.res_type, write.res_id)
        (rest if key in created else first).append(write)
        created.add(key)
    creations = tmp_path / "directory.ndjson"
    creations.write_text("".join(json.dumps(w.content) + "\n" for w in first))
    loaded = CliRunner().invoke(main, ["load", str(creations), "--database", url])
    assert loaded.exit_code == 0, loaded.output
    app = create_app(_settings(url, auth=False))
    client = app.test_client()
    for write in rest:
        path = f"/fhir/{write.res_type}/{write.res_id}"
        if write.content is None:
            assert client.delete(path).status_code in (200, 204)
        else:
            answer = client.put(path, json=write.content, content_type="application/fhir+json")
            assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    app.extensions["fhirsrv"].engine.dispose()


# ------------------------------------------------------------------------------ comparing
def _rows_by_name(engine: Engine) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every derived row, keyed by its resource's (type, id) instead of its rid. A
    `_lastUpdated` value equal to its resource's own last_updated is written LAST_UPDATED:
    the two databases were written at other instants."""
    out: dict[str, Counter[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        names = {r.rid: (r.res_type, r.res_id, r.last_updated) for r in conn.execute(select(resource))}

        def value(rid: int, column: str, v: Any) -> Any:
            if isinstance(v, datetime) and v == names[rid][2]:
                return "LAST_UPDATED"
            return v

        for table in (*INDEX_TABLES, entry_access, resource_identifier):
            columns = [c.name for c in table.c if c.name != "rid"]
            out[table.name] = Counter(
                (names[r.rid][:2], *(value(r.rid, c, getattr(r, c)) for c in columns))
                for r in conn.execute(select(table))
            )
        for table in (structure_territory, code_closure):
            out[table.name] = Counter(tuple(r) for r in conn.execute(select(table)))
        out["visibility"] = Counter((names[r.rid][:2], r.visibility) for r in conn.execute(select(resource)))
    return out


def _unstamped(row: Any) -> tuple[int, dict[str, Any]]:
    """A stored resource's version and content, without the instant it was written at."""
    content = json.loads(row.content)
    content["meta"].pop("lastUpdated")
    return row.version_id, content


def _ids(answer: dict[str, Any]) -> tuple[int | None, list[str]]:
    """A search's total and matches (type/id), or an expansion's size and codes."""
    if answer["resourceType"] == "ValueSet":
        contains = answer["expansion"].get("contains", [])
        return answer["expansion"].get("total"), sorted(c["code"] for c in contains)
    entries = answer.get("entry", [])
    return answer.get("total"), sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries
    )


def _searches(directory: list[dict[str, Any]]) -> list[str]:
    """Searches over every kind of index row, with values the directory holds."""
    offer = next(r for r in directory if r["resourceType"] == "HealthcareService")
    category = next(
        c for s in offer["specialty"] for c in s["coding"] if c["system"].endswith("/sos-category")
    )
    place = next(r for r in directory if r["resourceType"] == "Location" and "position" in r)
    identifier = next(r for r in directory if r["resourceType"] == "Organization" and "identifier" in r)
    ident = identifier["identifier"][0]
    near = f"{place['position']['latitude']}|{place['position']['longitude']}|30|km"
    return [
        "HealthcareService?_count=200",
        "Organization?_count=200",
        "Practitioner?_count=200",
        f"HealthcareService?sos-category={category['system']}|{category['code']}&_count=200",
        "HealthcareService?entry-status=published&_count=200",
        "Organization?name=centre&_count=200",
        f"Organization?identifier={ident['system']}|{ident['value']}",
        f"Location?near={near}&_count=200",
        "HealthcareService?organization.name=centre&_count=200",
        "Organization?_has:HealthcareService:organization:active=true&_count=200",
        "HealthcareService?_lastUpdated=gt2000-01-01&_count=200",
        "HealthcareService?_sort=-name&_count=200",
        "HealthcareService?_include=HealthcareService:organization&_count=200",
        "PractitionerRole?_count=200&_revinclude=HealthcareService:location",
        "Location?departement=29&_count=200",
        f"HealthcareService?specialty:below={category['system']}|{category['code']}&_count=200",
        f"ValueSet/$expand?url={category['system'].replace('CodeSystem', 'ValueSet')}&filter={category['code'][:5]}",
        "ValueSet?_count=200",
    ]


@pytest.fixture(params=BACKENDS)
def two_empty_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(first release's, fresh) URLs of two databases without any table."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'first-release.sqlite3'}", f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    import os

    schemas = [f"fhirsrv_upgrade_{name}_{os.getpid()}" for name in ("old", "fresh")]
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = normalise_url(PG_URL)
    sep = "&" if "?" in base else "?"
    urls = [f"{base}{sep}options=-csearch_path%3D{schema}" for schema in schemas]
    yield urls[0], urls[1]
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def test_first_release_database_upgrades_to_what_a_fresh_load_gives(
    two_empty_databases: tuple[str, str], tmp_path: Path
) -> None:
    old_url, fresh_url = two_empty_databases
    directory = _directory()
    writes = _history(directory)
    versions = _write_first_release(old_url, writes, _first_release_registry(tmp_path))
    _load_fresh(fresh_url, writes, tmp_path)

    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--database", old_url])
    assert upgraded.exit_code == 0, upgraded.output

    old, fresh = make_engine(old_url), make_engine(fresh_url)
    try:
        assert current(old) == current(fresh)
        # Every version as the first release stored it: content, number, instant, deletion.
        last = {(v["res_type"], v["res_id"]): v for v in versions}
        with old.connect() as conn:
            kept = [
                dict(r._mapping)
                for r in conn.execute(select(resource_version).order_by(resource_version.c.last_updated))
                if (r.res_type, r.res_id) in last
            ]
            heads = {(r.res_type, r.res_id): r for r in conn.execute(select(resource))}
        assert kept == versions
        for key, v in last.items():
            row = heads[key]
            assert (row.rid, row.version_id, row.last_updated, row.deleted, row.content) == tuple(
                v[c] for c in ("rid", "version_id", "last_updated", "deleted", "content")
            )
        # The conformance and terminology content this version ships, which the first release
        # had not, is added as a first start adds it.
        with fresh.connect() as conn:
            shipped = {
                (r.res_type, r.res_id): r
                for r in conn.execute(select(resource))
                if (r.res_type, r.res_id) not in last
            }
        assert shipped and {k: _unstamped(heads[k]) for k in shipped} == {
            k: _unstamped(r) for k, r in shipped.items()
        }

        # Every derived row as a fresh load of the same writes leaves it.
        derived_old, derived_fresh = _rows_by_name(old), _rows_by_name(fresh)
        for name in derived_fresh:
            assert derived_old[name] == derived_fresh[name], name
    finally:
        old.dispose()
        fresh.dispose()

    # Reads, versions and histories through the API: what was stored, as it was stored.
    upgraded_app = create_app(_settings(old_url, auth=False))
    api = upgraded_app.test_client()
    for v in versions:
        path = f"/fhir/{v['res_type']}/{v['res_id']}/_history/{v['version_id']}"
        answer = api.get(path)
        if v["deleted"]:
            assert answer.status_code == 410, path
        else:
            assert answer.status_code == 200 and answer.get_data(as_text=True) == v["content"], path
    for (res_type, res_id), v in last.items():
        history = api.get(f"/fhir/{res_type}/{res_id}/_history").get_json()
        numbers = [int(e["response"]["etag"].split('"')[1]) for e in history["entry"]]
        assert numbers == list(range(v["version_id"], 0, -1))
    upgraded_app.extensions["fhirsrv"].engine.dispose()

    # Searches, anonymous and with authorization off, and anonymous reads of deleted entries.
    apps = [create_app(_settings(url, auth=auth)) for url in (old_url, fresh_url) for auth in (True, False)]
    clients: list[FlaskClient] = [app.test_client() for app in apps]
    try:
        results = {}
        for query in _searches(directory):
            answers = [c.get(f"/fhir/{query}") for c in clients]
            assert all(a.status_code == 200 for a in answers), query
            found = [_ids(a.get_json()) for a in answers]
            assert found[0] == found[2] and found[1] == found[3], query
            results[query] = found
        # Not vacuous: the SOS parameters find offers, and anonymous callers see fewer of them.
        assert all(
            results[q][0][1] for q in results if "sos-category" in q or "entry-status" in q or "$" in q
        )
        offers = results["HealthcareService?_count=200"]
        assert 0 < len(offers[0][1]) < len(offers[1][1])
        for write in writes:
            if write.content is None:
                path = f"/fhir/{write.res_type}/{write.res_id}"
                statuses = [(c.get(path).status_code, c.get(f"{path}/_history").status_code) for c in clients]
                assert statuses[0] == statuses[2] and statuses[1] == statuses[3], path
    finally:
        for app in apps:
            app.extensions["fhirsrv"].engine.dispose()
