"""Broad searches found by walking rid order (search/walk.py) give the same pages as the
set-at-a-time plan: every match once, in order, across pages, with a total that is exact up
to the bound and a fair estimate above it, on both back-ends.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.interactions.load import load_paths
from fhirsrv.storage.bulk import refresh_statistics

SYSTEM = "https://example.org/fhir/CodeSystem/test-specialty"
SIZE = 1300  # more than the walk's WALK_ROWS, so the walk can stop early or give up


def _service(i: int) -> dict:
    return {
        "resourceType": "HealthcareService",
        "id": f"hs{i:04d}",
        "name": f"Maison de santé {i}" if i % 10 == 3 else f"Centre {i}",
        "specialty": [{"coding": [{"system": SYSTEM, "code": "rare" if i % 400 == 7 else "common"}]}],
    }


@pytest.fixture
def directory(app: Flask, tmp_path: Path) -> list[dict]:
    services = [_service(i) for i in range(SIZE)]
    (tmp_path / "services.ndjson").write_text("\n".join(json.dumps(s) for s in services) + "\n")
    load_paths(app.extensions["fhirsrv"], [tmp_path])
    refresh_statistics(app.extensions["fhirsrv"].engine)  # as every load does
    return services


def _all_pages(client: FlaskClient, query: str) -> tuple[list[str], list[int | None]]:
    ids, totals = [], []
    url: str | None = f"/fhir/HealthcareService?{query}&_count=37"
    while url:
        bundle = client.get(url.replace("http://fhir.test", "")).get_json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
        totals.append(bundle.get("total"))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return ids, totals


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=maison", lambda s: s["name"].startswith("Maison")),
        (f"specialty={SYSTEM}|rare", lambda s: s["specialty"][0]["coding"][0]["code"] == "rare"),
        (f"specialty={SYSTEM}|common", lambda s: s["specialty"][0]["coding"][0]["code"] == "common"),
    ],
)
def test_every_match_once_in_order_with_an_exact_total_under_the_bound(client, directory, query, expected):
    ids, totals = _all_pages(client, query)
    wanted = [s["id"] for s in directory if expected(s)]
    assert ids == wanted
    if len(wanted) <= 1000:
        assert totals[0] == len(wanted)
    else:  # above the exact-count bound: an estimate, never below what was proven
        assert 1000 < totals[0] <= 2 * len(wanted)


def test_above_the_bound_the_total_is_estimated_from_the_walk(app, client, directory):
    engine = app.extensions["fhirsrv"].search
    engine.settings = replace(engine.settings, exact_total_up_to=50)
    first = client.get("/fhir/HealthcareService?name=maison&_count=10").get_json()
    assert len(first["entry"]) == 10
    assert 65 <= first["total"] <= 260  # 130 matches: estimated from the walk (PostgreSQL), counted (SQLite)
    exact = client.get("/fhir/HealthcareService?name=maison&_count=10&_total=accurate").get_json()
    assert exact["total"] == 130


def test_a_selective_code_pages_from_the_token_index(client, directory):
    """One system|code and nothing else: on PostgreSQL the page and total come from the token
    index alone (rare: 4 of 1,300, too few for the walk); the answer is the same everywhere."""
    wanted = [s["id"] for s in directory if s["specialty"][0]["coding"][0]["code"] == "rare"]
    first = client.get(f"/fhir/HealthcareService?specialty={SYSTEM}|rare&_count=3").get_json()
    assert first["total"] == len(wanted) == 4
    assert [e["resource"]["id"] for e in first["entry"]] == wanted[:3]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(following.replace("http://fhir.test", "")).get_json()
    assert [e["resource"]["id"] for e in second["entry"]] == wanted[3:]
    assert not any(link["relation"] == "next" for link in second["link"])
    client.delete(f"/fhir/HealthcareService/{wanted[0]}")
    after = client.get(f"/fhir/HealthcareService?specialty={SYSTEM}|rare&_count=3").get_json()
    assert after["total"] == 3 and wanted[0] not in [e["resource"]["id"] for e in after["entry"]]
