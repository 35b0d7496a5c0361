"""Limits on how much work one search may ask for: each is a setting, and a search past it is
refused before it runs, with an OperationOutcome that names the limit and its variable."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from tests.api.helpers import FHIR, org, post


@pytest.fixture
def make_client(settings: Settings):  # type: ignore[no-untyped-def]
    apps: list[Flask] = []

    def build(**overrides: Any) -> FlaskClient:
        app = create_app(settings.overridden(**overrides))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _too_costly(answer: Any, status: int, variable: str) -> str:
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "too-costly"
    diagnostics = body["issue"][0]["diagnostics"]
    assert variable in diagnostics
    return diagnostics


def test_sort_keys_are_capped(client):
    keys = ",".join(["name", "-name", "_id", "-_id", "_lastUpdated", "name"])
    answer = client.get(f"/fhir/Organization?_sort={keys}")
    _too_costly(answer, 400, "FHIRSRV_MAX_SORT_KEYS")
    assert client.get("/fhir/Organization?_sort=name,-_lastUpdated,_id").status_code == 200


def test_sort_keys_count_across_repeated_parameters(client):
    many = "&".join(["_sort=name"] * 300)
    _too_costly(client.get(f"/fhir/Organization?{many}"), 400, "FHIRSRV_MAX_SORT_KEYS")


def test_chain_depth_is_capped(client):
    deep = "HealthcareService?organization.partof.partof.partof.name=x"
    _too_costly(client.get(f"/fhir/{deep}"), 400, "FHIRSRV_MAX_CHAIN_DEPTH")
    assert client.get("/fhir/HealthcareService?organization.partof.name=x").status_code == 200


def test_has_nesting_counts_as_chain_depth(client):
    nested = "Organization?_has:Organization:partof:_has:Organization:partof:_has:Organization:partof:_has:Organization:partof:name=x"
    _too_costly(client.get(f"/fhir/{nested}"), 400, "FHIRSRV_MAX_CHAIN_DEPTH")
    assert client.get("/fhir/Organization?_has:HealthcareService:organization:name=x").status_code == 200


def test_filter_paths_count_as_chain_depth(client):
    deep = "organization.partof.partof.partof.name eq x"
    _too_costly(
        client.get("/fhir/HealthcareService", query_string={"_filter": deep}), 400, "FHIRSRV_MAX_CHAIN_DEPTH"
    )


def test_filter_nesting_is_capped(client):
    nested = "(" * 20 + "name eq x" + ")" * 20
    _too_costly(
        client.get("/fhir/Organization", query_string={"_filter": nested}), 400, "FHIRSRV_MAX_FILTER_DEPTH"
    )
    assert client.get("/fhir/Organization", query_string={"_filter": "((name eq x))"}).status_code == 200


def test_filter_comparisons_count_as_search_parameters(client):
    wide = " or ".join(f"name eq n{i}" for i in range(60))
    answer = client.get("/fhir/Organization", query_string={"_filter": wide})
    _too_costly(answer, 400, "FHIRSRV_MAX_SEARCH_PARAMS")


def test_include_parameters_are_capped(client):
    includes = "&".join(["_include=HealthcareService:organization"] * 11)
    _too_costly(client.get(f"/fhir/HealthcareService?{includes}"), 400, "FHIRSRV_MAX_INCLUDES")


def test_included_resources_per_page_are_capped(make_client):
    client = make_client(max_included=3)
    parent = post(client, org("Parent")).get_json()["id"]
    for i in range(5):
        post(client, org(f"Child {i}", partOf={"reference": f"Organization/{parent}"}))
    # Five children of one parent: the parent is one included resource, within the limit...
    answer = client.get("/fhir/Organization?name=Child&_include=Organization:partof")
    assert answer.status_code == 200
    # ...but the parent's five children, reverse-included, are more than three.
    answer = client.get(f"/fhir/Organization?_id={parent}&_revinclude=Organization:partof")
    _too_costly(answer, 422, "FHIRSRV_MAX_INCLUDED")


def test_limits_apply_to_searches_inside_a_batch(client):
    keys = ",".join(["name"] * 6)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Organization?_sort={keys}"}}],
    }
    answer = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    assert answer.status_code == 200
    entry = answer.get_json()["entry"][0]
    assert entry["response"]["status"].startswith("400")
    assert "FHIRSRV_MAX_SORT_KEYS" in entry["response"]["outcome"]["issue"][0]["diagnostics"]
