"""`near`: who is within the distance."""

from __future__ import annotations

import math

from tests.search.directory import load

EARTH_KM = 6371.0088  # the mean Earth radius (IUGG)


def matches(client, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    res = client.get(query)
    assert res.status_code == 200, res.get_json()
    return sorted(
        e["resource"]["id"] for e in res.get_json().get("entry", []) if e["search"]["mode"] == "match"
    )


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
    assert matches(app.test_client(), "/fhir/Location?near=48.0|-3.0|100|km") == ["east", "north"]
