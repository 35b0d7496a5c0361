"""Random small directories and random queries: the engine must agree with a brute-force
Python evaluation of the same query over the same resources."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import write_transaction

WORDS = ["Hôpital", "hopital", "Ligue", "Centre", "Équipe", "equipe", "Maison", "CPTS", "Santé"]
SYSTEMS = ["http://a", "http://b"]
CODES = ["1", "2", "3"]


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


organizations = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
            "active": st.booleans(),
            "codes": st.lists(st.tuples(st.sampled_from(SYSTEMS), st.sampled_from(CODES)), max_size=2),
        }
    ),
    min_size=0,
    max_size=8,
)
queries = st.one_of(
    st.tuples(st.just("name"), st.sampled_from(WORDS + ["hop", "equ", "s"])),
    st.tuples(st.just("active"), st.sampled_from(["true", "false"])),
    st.tuples(st.just("type"), st.sampled_from([f"{s}|{c}" for s in SYSTEMS for c in CODES] + CODES)),
    st.tuples(st.just("type:not"), st.sampled_from([f"{s}|{c}" for s in SYSTEMS for c in CODES])),
)


def expected(orgs: list[dict], name: str, value: str) -> set[str]:
    out = set()
    for i, org in enumerate(orgs):
        if name == "name":
            hit = fold(org["name"]).startswith(fold(value))
        elif name == "active":
            hit = str(org["active"]).lower() == value
        else:
            system, _, code = value.rpartition("|")
            has = any((not system or s == system) and c == code for s, c in org["codes"])
            hit = not has if name == "type:not" else has
        if hit:
            out.add(f"o{i}")
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orgs=organizations, query=st.lists(queries, min_size=1, max_size=2))
def test_engine_agrees_with_brute_force(db_url, orgs, query):  # type: ignore[no-untyped-def]
    app = create_app(
        Settings.from_env(database_url=db_url, load_demo=False, base_url="http://t/fhir", auth=False)
    )
    services = app.extensions["fhirsrv"]
    try:
        with write_transaction(services.engine) as conn:
            conn.exec_driver_sql("DELETE FROM idx_string")
            for table in (
                "idx_token",
                "idx_reference",
                "idx_date",
                "idx_number",
                "idx_uri",
                "idx_geo",
                "idx_sort",
                "resource_version",
                "resource",
            ):
                conn.exec_driver_sql(f"DELETE FROM {table}")
            for i, org in enumerate(orgs):
                res = {
                    "resourceType": "Organization",
                    "id": f"o{i}",
                    "name": org["name"],
                    "active": org["active"],
                }
                if org["codes"]:  # R4 JSON has no empty array
                    res["type"] = [{"coding": [{"system": s, "code": c}]} for s, c in org["codes"]]
                writes.create(services, conn, res, res["id"], actor=SERVER)
        want = set.intersection(*[expected(orgs, n, v) for n, v in query])
        res = app.test_client().get(f"/fhir/Organization?{urlencode(query)}&_count=100")
        assert res.status_code == 200
        got = {e["resource"]["id"] for e in res.get_json().get("entry", [])}
        assert got == want
        assert res.get_json()["total"] == len(want)
    finally:
        services.engine.dispose()
