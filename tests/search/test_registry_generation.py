"""A SearchParameter written through one server process is searched and indexed by every other.

Each worker process of `fhirsrv serve --workers N` holds its own search registry; two apps on
one database stand for two of them here (tests/test_serving.py does it with real processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from tests.api.helpers import ALIAS_SEARCH_PARAMETER as PARAM
from tests.api.helpers import FHIR


@pytest.fixture
def two_processes(settings: Settings) -> Iterator[tuple[FlaskClient, FlaskClient]]:
    apps: list[Flask] = [create_app(settings), create_app(settings)]
    yield apps[0].test_client(), apps[1].test_client()
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _names(client: FlaskClient, query: str) -> list[str]:
    response = client.get(f"/fhir/Organization?{query}")
    assert response.status_code == 200, response.get_json()
    return sorted(e["resource"]["name"] for e in response.get_json().get("entry", []))


def _put(client: FlaskClient, res: dict[str, Any]) -> int:
    path = f"/fhir/{res['resourceType']}/{res['id']}"
    return client.put(path, json=res, headers={"Content-Type": FHIR}).status_code


def test_a_parameter_written_by_one_process_is_searched_and_indexed_by_the_other(
    two_processes: tuple[FlaskClient, FlaskClient],
) -> None:
    first, second = two_processes
    # Both have built their registry (at start) before the parameter exists.
    assert first.get("/fhir/Organization?alias=ligue").status_code == 400
    assert second.get("/fhir/Organization?alias=ligue").status_code == 400
    assert _put(first, PARAM) == 201
    # Written by the second process, after the parameter: indexed by it.
    assert _put(second, {"resourceType": "Organization", "id": "o1", "name": "Ligue 29", "alias": ["LCC 29"]}) == 201
    assert _names(second, "alias=lcc") == ["Ligue 29"]
    assert _names(first, "alias=lcc") == ["Ligue 29"]
    statement = second.get("/fhir/metadata").get_json()
    organization = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Organization")
    assert "alias" in {p["name"] for p in organization["searchParam"]}


def test_a_changed_or_deleted_parameter_is_seen_by_the_other_process(
    two_processes: tuple[FlaskClient, FlaskClient],
) -> None:
    first, second = two_processes
    assert _put(first, PARAM) == 201
    assert _put(first, {"resourceType": "Organization", "id": "o1", "name": "Ligue 29", "alias": ["LCC"]}) == 201
    assert _names(second, "alias=lcc") == ["Ligue 29"]
    # Now on the name: the second process indexes a new structure by it.
    assert _put(first, {**PARAM, "expression": "Organization.name"}) == 200
    assert _put(second, {"resourceType": "Organization", "id": "o2", "name": "LCC Brest"}) == 201
    assert _names(first, "alias=lcc") == ["LCC Brest", "Ligue 29"]  # o1 keeps the rows it was given
    assert first.delete("/fhir/SearchParameter/test-organization-alias").status_code in (200, 204)
    assert second.get("/fhir/Organization?alias=lcc").status_code == 400
    lenient = second.get("/fhir/Organization?alias=lcc", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
