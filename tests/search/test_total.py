"""Bundle.total on every page: exact up to the bound (FHIRSRV_EXACT_TOTAL_UP_TO), an estimate
above it that never breaks a page, on both back-ends."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.interactions.load import load_paths
from fhirsrv.storage.bulk import refresh_statistics
from fhirsrv.terminology import valueset
from fhirsrv.validation import codes
from tests.search.directory import load

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
BASKET = f"{BASE}/ValueSet/sos-inca-basket"
IN_BASKET = ["douleur-hypnoanalgesie", "activite-physique-adaptee"]
OUTSIDE = "soins-palliatifs"


def all_pages(client: FlaskClient, query: str) -> tuple[list[str], list[int | None]]:
    """The ids of every page's matches, following `next` to the end, and each page's total."""
    ids, totals = [], []
    url: str | None = f"/fhir/{query}"
    while url:
        res = client.get(url.replace("http://fhir.test", ""))
        assert res.status_code == 200, (url, res.get_json())
        bundle = res.get_json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        totals.append(bundle.get("total"))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return ids, totals


@pytest.fixture
def basket(app: Flask) -> FlaskClient:
    """The shipped terminology, and 20 services: 14 with a basket category, 6 without.
    The exact count stops at 5, so that every page past the first one estimates its total."""
    services = app.extensions["fhirsrv"]
    load_paths(services, [services.settings.terminology_dir])
    valueset.clear_cache()
    codes.clear_cache()
    items = [
        {
            "resourceType": "HealthcareService",
            "id": f"hs{i:02d}",
            "name": f"Service {19 - i:02d}",
            "specialty": [{"coding": [{"system": CAT, "code": OUTSIDE if i % 10 < 3 else IN_BASKET[i % 2]}]}],
        }
        for i in range(20)
    ]
    load(services, [*items, {"resourceType": "Organization", "id": "org", "name": "Structure"}])
    services.search.settings = replace(services.search.settings, exact_total_up_to=5)
    return app.test_client()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"HealthcareService?sos-category:in={BASKET}&_count=4", 14),
        (f"HealthcareService?sos-category:in={BASKET}&_count=4&_sort=name", 14),
        (f"HealthcareService?sos-category:in={BASKET}&_count=4&_sort=-name,_id", 14),
        (f"HealthcareService?specialty:not-in={BASKET}&_count=2", 6),
        (f"HealthcareService?specialty:not-in={BASKET}&_count=2&_sort=name", 6),
        ("?_type=HealthcareService,Organization&_count=3", 21),
        ("?_type=HealthcareService,Organization&_count=3&_sort=_id", 21),
    ],
)
def test_value_set_and_type_lists_page_to_the_end(basket, query, expected):
    """An IN list of codes or types is rendered when the server asks PostgreSQL for an estimate
    (past the first page, above the bound): it reached the planner unrendered, a 500."""
    ids, totals = all_pages(basket, query)
    assert len(ids) == len(set(ids)) == expected
    assert all(total is not None and total > 5 for total in totals)


def test_a_count_alone_above_the_bound_is_estimated(basket):
    res = basket.get(f"/fhir/HealthcareService?sos-category:in={BASKET}&_summary=count&_total=estimate")
    assert res.status_code == 200, res.get_json()
    assert res.get_json()["total"] > 5


# ------------------------------------------------------------------------------- the walk
SIZE = 1300  # more than the walk's 500 rows, and more than the bound of 1,000


@pytest.fixture
def structures(app: Flask, tmp_path: Path) -> FlaskClient:
    """1,300 services, of which one structure provides the first three (in id order)."""
    services = [
        {
            "resourceType": "HealthcareService",
            "id": f"hs{i:04d}",
            "name": f"Service {i}",
            "providedBy": {"reference": f"Organization/org-{'22-0001' if i < 3 else i % 97}"},
        }
        for i in range(SIZE)
    ]
    (tmp_path / "services.ndjson").write_text("\n".join(json.dumps(s) for s in services) + "\n")
    load_paths(app.extensions["fhirsrv"], [tmp_path])
    refresh_statistics(app.extensions["fhirsrv"].engine)
    return app.test_client()


@pytest.mark.parametrize("count", [1, 2, 3, 20])
def test_a_few_matches_found_at_once_are_counted_whatever_the_page_size(structures, count):
    """The walk finds the first page among the first rows; it used to scale the rate it saw
    to the whole type (3 matches: total 1,300 with _count=1 on PostgreSQL)."""
    ids, totals = all_pages(structures, f"HealthcareService?organization=org-22-0001&_count={count}")
    assert ids == ["hs0000", "hs0001", "hs0002"]
    assert totals == [3] * len(totals)
