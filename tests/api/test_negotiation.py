"""Formats, media types, _pretty, _summary, _elements and the error statuses of bad requests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from werkzeug.http import http_date
from werkzeug.urls import iri_to_uri

from fhirsrv.api.negotiation import http_date_of
from fhirsrv.app import create_app
from tests.api.helpers import FHIR, count_rows, org, post


def test_json_formats_accepted_xml_refused_with_406(client):
    oid = post(client, org()).get_json()["id"]
    for fmt in ("json", "application/fhir+json", "application/json"):
        assert client.get(f"/fhir/Organization/{oid}?_format={fmt}").status_code == 200
    assert client.get(f"/fhir/Organization/{oid}?_format=xml").status_code == 406
    assert (
        client.get(f"/fhir/Organization/{oid}", headers={"Accept": "application/fhir+xml"}).status_code == 406
    )
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert client.get(f"/fhir/Organization/{oid}", headers={"Accept": browser}).status_code == 200


def test_unsupported_content_type_is_415(client):
    res = client.post(
        "/fhir/Organization", data="<Organization/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert res.status_code == 415
    res = client.post("/fhir/Organization", data="name=x", headers={"Content-Type": "text/plain"})
    assert res.status_code == 415
    assert count_rows(client) == (0, 0)


def test_malformed_json_and_invalid_utf8_are_400(client):
    for body in (b"{not json", b'{"resourceType": "Organization", "name": "\xff\xfe"}', b"[1, 2]", b""):
        res = client.post("/fhir/Organization", data=body, headers={"Content-Type": FHIR})
        assert res.status_code == 400, body
        assert res.get_json()["resourceType"] == "OperationOutcome"
    deep = b'{"resourceType": "Organization", "extension": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert client.post("/fhir/Organization", data=deep, headers={"Content-Type": FHIR}).status_code == 400
    assert count_rows(client) == (0, 0)


def test_body_too_large_is_413(app, client):
    limit = app.extensions["fhirsrv"].settings.max_body_bytes
    big = org(name="x" * (limit + 10))
    res = post(client, big)
    assert res.status_code == 413
    assert res.get_json()["resourceType"] == "OperationOutcome"


def test_method_not_allowed_is_405_with_allow(client):
    oid = post(client, org()).get_json()["id"]
    res = client.post(f"/fhir/Organization/{oid}", json=org(), headers={"Content-Type": FHIR})
    assert res.status_code == 405
    assert "PUT" in res.headers["Allow"]
    bare = client.delete("/fhir/Organization")
    assert bare.status_code == 405 and bare.headers["Allow"] == "GET, HEAD, POST"


def test_pretty_summary_and_elements(client):
    full = org(
        "Centre Eugène Marquis",
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">CEM</div>'},
        telecom=[{"system": "phone", "value": "02 99 00 00 00"}],
        alias=["CEM"],
    )
    oid = post(client, full).get_json()["id"]
    pretty = client.get(f"/fhir/Organization/{oid}?_pretty=true")
    assert b'\n  "resourceType"' in pretty.data
    summary = client.get(f"/fhir/Organization/{oid}?_summary=true").get_json()
    assert summary["name"] == "Centre Eugène Marquis" and "telecom" not in summary and "text" not in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    text = client.get(f"/fhir/Organization/{oid}?_summary=text").get_json()
    assert "text" in text and "name" not in text
    data = client.get(f"/fhir/Organization/{oid}?_summary=data").get_json()
    assert "text" not in data and data["telecom"]
    elements = client.get(f"/fhir/Organization/{oid}?_elements=alias").get_json()
    assert set(elements) == {"resourceType", "id", "meta", "alias"}
    assert client.get(f"/fhir/Organization/{oid}?_summary=maybe").status_code == 400


def test_unknown_endpoint_is_404_operation_outcome(client):
    res = client.get("/fhir/Organization/1/whatever")
    assert res.status_code == 404
    assert res.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/$no-such-operation").status_code == 404


def test_last_modified_is_the_imf_fixdate_werkzeug_writes() -> None:
    """Written directly rather than by werkzeug (a read's CPU): the same text for every day of
    the week and month of the year, leap days and far years included."""
    start = datetime(1999, 12, 25, 23, 59, 58, 999_999)
    instants = [start + timedelta(days=d, seconds=13 * d) for d in range(0, 800, 3)]
    instants += [datetime(2024, 2, 29, 0, 0, 0), datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1)]
    for when in instants:
        assert http_date_of(when) == http_date(when), when


@pytest.mark.parametrize("host", ["FHIR.Example.ORG:8080", "bücher.example", "127.0.0.1:8080"])
def test_content_location_is_the_uri_of_the_host_the_client_reached(settings, host: str) -> None:
    """Without FHIRSRV_BASE_URL the base is the request's own: whatever Host the client sent,
    Content-Location is that base as a URI (an international name in its ASCII form)."""
    app = create_app(replace(settings, base_url=""))
    try:
        client = app.test_client()
        oid = post(client, org()).get_json()["id"]
        response = client.get(f"/fhir/Organization/{oid}", base_url=f"http://{host}")
        expected = iri_to_uri(f"http://{host}/fhir/Organization/{oid}/_history/1")
        assert response.status_code == 200
        assert response.headers["Content-Location"] == expected
        assert response.headers["Content-Location"].isascii()
    finally:
        app.extensions["fhirsrv"].engine.dispose()
