"""`near` and `near-insee-code`: who is within the distance, and how far each match is."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.search.directory import load

DISTANCE = "http://hl7.org/fhir/StructureDefinition/location-distance"
EARTH_KM = 6371.0088  # the mean Earth radius (IUGG)


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance, written independently of the server's SQL."""
    p1, l1, p2, l2 = map(math.radians, (lat1, lon1, lat2, lon2))
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(math.sqrt(h))


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(app.extensions["fhirsrv"])
    return app.test_client()


def matches(client, query: str) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    res = client.get(query)
    assert res.status_code == 200, res.get_json()
    return {
        e["resource"]["id"]: e["search"]
        for e in res.get_json().get("entry", [])
        if e["search"]["mode"] == "match"
    }


def distance_km(search: dict[str, Any]) -> float:
    (extension,) = [e for e in search.get("extension", []) if e["url"] == DISTANCE]
    value = extension["valueDistance"]
    assert value["unit"] == "km"
    assert value["system"] == "http://unitsofmeasure.org" and value["code"] == "km"
    return value["value"]


def test_a_place_just_inside_the_distance_is_found(app):
    """The prefilter box and the distance agree: a place 99.95 km due north is within 100 km."""
    north = 48.0 + 99.95 / (EARTH_KM * math.pi / 180)
    east_lon = -3.0 + 2 * math.degrees(
        math.asin(math.sin(99.95 / (2 * EARTH_KM)) / math.cos(math.radians(48.0)))
    )
    places = {"north": (north, -3.0), "east": (48.0, east_lon), "beyond": (north + 0.01, -3.0)}
    load(
        app.extensions["fhirsrv"],
        [
            {"resourceType": "Location", "id": lid, "position": {"latitude": lat, "longitude": lon}}
            for lid, (lat, lon) in places.items()
        ],
    )
    found = matches(app.test_client(), "/fhir/Location?near=48.0|-3.0|100|km")
    assert sorted(found) == ["east", "north"]
    for lid in found:
        assert distance_km(found[lid]) == pytest.approx(99.95, abs=0.01)


def test_each_match_says_how_far_it_is(client):
    point = (48.39, -4.49)
    found = matches(client, "/fhir/Location?near=48.39|-4.49|80|km")
    assert sorted(found) == ["loc-brest", "loc-quimper"]
    assert distance_km(found["loc-brest"]) == pytest.approx(
        great_circle_km(*point, 48.3904, -4.4861), abs=0.01
    )
    assert distance_km(found["loc-quimper"]) == pytest.approx(
        great_circle_km(*point, 47.9960, -4.1020), abs=0.01
    )


def test_through_a_chain_an_offer_is_as_far_as_its_nearest_location(client):
    found = matches(client, "/fhir/HealthcareService?location.near=48.39|-4.49|80|km&_sort=near")
    assert list(found) == ["hs-apa", "hs-psy"]  # Brest, then Quimper
    assert distance_km(found["hs-psy"]) == pytest.approx(
        great_circle_km(48.39, -4.49, 47.9960, -4.1020), abs=0.01
    )


def test_no_distance_without_a_near_criterion(client):
    found = matches(client, "/fhir/Location?_id=loc-brest")
    assert "extension" not in found["loc-brest"]


def test_near_a_commune_by_its_insee_code(client):
    # 29019 is Brest: its town hall (48.39169, -4.48454), from the shipped commune list.
    found = matches(client, "/fhir/Location?near-insee-code=29019|10|km")
    assert sorted(found) == ["loc-brest"]
    assert distance_km(found["loc-brest"]) == pytest.approx(
        great_circle_km(48.39169, -4.48454, 48.3904, -4.4861), abs=0.01
    )
    assert sorted(matches(client, "/fhir/Location?near-insee-code=29019|60|km")) == [
        "loc-brest",
        "loc-quimper",
    ]
    assert sorted(matches(client, "/fhir/Location?near-insee-code=29019|500|m")) == ["loc-brest"]
    assert sorted(matches(client, "/fhir/Location?near-insee-code=29019|5|km,35238|5|km")) == [
        "loc-brest",
        "loc-rennes",
    ]


def test_near_insee_code_refuses_what_it_cannot_place(client):
    for value in ("99999|10|km", "29019|far|km", "29019|10|parsecs", ""):
        res = client.get(f"/fhir/Location?near-insee-code={value}")
        assert res.status_code == 400, value
        assert res.get_json()["resourceType"] == "OperationOutcome"
    unknown = client.get("/fhir/Location?near-insee-code=99999|10|km").get_json()
    assert "99999" in unknown["issue"][0]["diagnostics"]
