"""Random searches paged to the end: every page answers, every match comes once, and Bundle.total
is the number of matches whenever it is within the exact-count bound, on both back-ends.

The directory is large enough for each way a page is found on PostgreSQL (the walk over the
first 500 rows, the token index, the set-at-a-time plan) and for results on both sides of the
bound: 1,300 services, structures whose services are contiguous or spread in id order, common
and rare codes, names, dates. The bound is the default 1,000, and 40 to put more results above it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhirsrv.interactions.load import load_paths
from fhirsrv.storage.bulk import refresh_statistics

SYSTEM = "https://example.org/fhir/CodeSystem/test-specialty"
LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
SIZE = 1300
MAX_PAGES = 60  # a search is paged with a _count large enough to end within this many pages


def _service(i: int) -> dict:
    verified = (date(2025, 1, 1) + timedelta(days=i * 7 % 365)).isoformat()
    return {
        "resourceType": "HealthcareService",
        "id": f"hs{i:04d}",
        "name": "Équipe mobile" if i % 7 == 0 else f"Maison de santé {i}" if i % 10 == 3 else f"Centre {i}",
        "active": i % 10 != 0,
        # The first half by structures of 25 services in a row, the second spread over 13.
        "providedBy": {"reference": f"Organization/{f'c{i // 25}' if i < SIZE // 2 else f's{i % 13}'}"},
        "specialty": [
            {
                "coding": [
                    {"system": SYSTEM, "code": "rare" if i % 400 == 7 else "common" if i % 3 else "other"}
                ]
            }
        ],
        "extension": [{"url": LIFECYCLE, "extension": [{"url": "lastVerified", "valueDate": verified}]}],
    }


@pytest.fixture
def directory(app: Flask, tmp_path: Path) -> FlaskClient:
    (tmp_path / "services.ndjson").write_text("\n".join(json.dumps(_service(i)) for i in range(SIZE)) + "\n")
    load_paths(app.extensions["fhirsrv"], [tmp_path])
    refresh_statistics(app.extensions["fhirsrv"].engine)
    return app.test_client()


criteria = st.one_of(
    st.tuples(st.just("organization"), st.sampled_from(["c0", "c3", "c25", "s0", "s12", "nowhere"])),
    st.tuples(
        st.just("specialty"),
        st.sampled_from([f"{SYSTEM}|rare", f"{SYSTEM}|common", f"{SYSTEM}|other", "rare", "other"]),
    ),
    st.tuples(st.just("name"), st.sampled_from(["maison", "centre", "equipe", "centre 1", "nothing"])),
    st.tuples(st.just("active"), st.sampled_from(["true", "false"])),
    st.tuples(
        st.just("last-verified"),
        st.sampled_from(["2025-01-01", "ge2025-06", "lt2025-02-15", "le2025-12-31", "ne2025-03-05", "2025"]),
    ),
)
searches = st.fixed_dictionaries(
    {
        "criteria": st.lists(criteria, min_size=0, max_size=2),
        "count": st.integers(1, 50),
        "sort": st.sampled_from([None, "name", "-last-verified", "_id", "-_lastUpdated"]),
    }
)


def _page_through(client: FlaskClient, query: str) -> tuple[list[str], list[int]]:
    ids: list[str] = []
    totals: list[int] = []
    url: str | None = f"/fhir/HealthcareService?{query}"
    while url:
        res = client.get(url.replace("http://fhir.test", ""))
        assert res.status_code == 200, (url, res.get_json())
        bundle = res.get_json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
        totals.append(bundle["total"])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return ids, totals


@pytest.mark.parametrize("bound", [1000, 40])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(search=searches)
def test_paging_to_the_end_the_total_is_exact_up_to_the_bound(app, directory, bound, search):  # type: ignore[no-untyped-def]
    engine = app.extensions["fhirsrv"].search
    engine.settings = replace(engine.settings, exact_total_up_to=bound)
    params = list(search["criteria"])
    counted = directory.get(f"/fhir/HealthcareService?{urlencode([*params, ('_summary', 'count')])}")
    assert counted.status_code == 200, counted.get_json()
    matches = counted.get_json()["total"]
    if search["sort"]:
        params.append(("_sort", search["sort"]))
    params.append(("_count", str(max(search["count"], -(-matches // MAX_PAGES)))))
    query = urlencode(params)

    ids, totals = _page_through(directory, query)

    assert len(ids) == len(set(ids)) == matches, query
    for total in totals:
        assert total == matches if total <= bound else matches > bound, (query, totals)
