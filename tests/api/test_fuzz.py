"""Throw malformed requests at every route family and check the server's contract:
never a 5xx, always an OperationOutcome (or the token endpoint's OAuth error) on failure, and
the database exactly as it was — anonymous writes are refused and authenticated ones carry
bodies that cannot be valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from fhirsrv.access.principal import SERVER
from fhirsrv.auth.tables import oauth_client, oauth_jti
from fhirsrv.interactions import writes
from fhirsrv.storage.schema import resource, resource_version
from tests.api.helpers import unlimited_app_with_admin_token

NASTY = [
    "' OR 1=1 --",
    '"; DROP TABLE resource; --',
    "1; SELECT pg_sleep(5)",
    "%00",
    "\x00",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "ge2026-13-45",
    "eq9999999999999999999999999",
    "Organization/../../x",
    "le",
    ":missing",
    "a" * 300,
    "é" * 50,
    "\ud7ff",
    "",
]
TYPES = [
    "Organization",
    "HealthcareService",
    "Location",
    "AuditEvent",
    "CodeSystem",
    "ValueSet",
    "Nope",
    "organization",
]
PARAMS = [
    "name", "_id", "_count", "_sort", "_include", "_revinclude", "_has:HealthcareService:organization:name",
    "organization.name", "entry-status", "_lastUpdated", "near", "_filter", "_summary", "_elements",
    "_total", "_cursor", "_since", "_at", "_type", "identifier", "code:below", "url", "_format", "_pretty",
]  # fmt: skip
OPS = ["$validate", "$expand", "$lookup", "$validate-code", "$everything", "$nope", "_history", "x"]
CONTENT_TYPES = ["application/fhir+json", "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "application/json-patch+json", "multipart/form-data; boundary=x", ""]  # fmt: skip
ACCEPTS = [
    "application/fhir+json",
    "*/*",
    "text/html",
    "application/xml",
    "application/fhir+json; fhirVersion=9",
]

text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
segment = st.one_of(st.sampled_from(["o1", "o1/_history/1", "o1/_history/x", "-1"]), text).map(
    lambda s: quote(s, safe="/")
)
res_type = st.one_of(st.sampled_from(TYPES), text.map(lambda s: quote(s, safe="")))
path = st.one_of(
    st.builds(lambda t: f"/fhir/{t}", res_type),
    st.builds(lambda t, i: f"/fhir/{t}/{i}", res_type, segment),
    st.builds(lambda t, i, o: f"/fhir/{t}/{i}/{o}", res_type, segment, st.sampled_from(OPS)),
    st.builds(lambda t, o: f"/fhir/{t}/{o}", res_type, st.sampled_from([*OPS, "_search"])),
    st.sampled_from(["/fhir", "/fhir/", "/fhir/_history", "/fhir/metadata", "/fhir/token", "/fhir/$nope"]),
)
query = st.lists(st.tuples(st.one_of(st.sampled_from(PARAMS), text), text), max_size=6).map(urlencode)
json_ish = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    ),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)


def _never_valid(body: bytes) -> bytes:
    """A body no parser accepts as a resource: a trailing NUL is invalid JSON whatever comes first."""
    return body + b"\x00"


body = st.one_of(
    st.binary(max_size=200),
    json_ish.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)),
    st.builds(lambda t, v: orjson.dumps({"resourceType": t, "id": "o1", "x": v}), res_type, json_ish),
)
request_strategy = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        "path": path,
        "query": query,
        "body": body,
        "content_type": st.sampled_from(CONTENT_TYPES),
        "accept": st.sampled_from(ACCEPTS),
        "authenticated": st.booleans(),
        "extra": st.dictionaries(
            st.sampled_from(["If-Match", "If-None-Match", "If-None-Exist", "Prefer", "If-Modified-Since"]),
            text,
        ),
    }
)


def _one_organization(services: Any) -> None:
    with services.engine.begin() as conn:
        writes.create(services, conn, {"resourceType": "Organization", "name": "Ligue"}, "o1", actor=SERVER)


@pytest.fixture
def fuzz_app(db_url: str) -> Iterator[tuple[Flask, str]]:
    with unlimited_app_with_admin_token(db_url, _one_organization) as built:
        yield built


def _snapshot(app: Flask) -> tuple[int, ...]:
    engine = app.extensions["fhirsrv"].engine
    with engine.connect() as conn:
        # Refused attempts leave AuditEvents by design: everything else must stay as it was.
        data = (
            conn.execute(select(func.count()).select_from(table).where(table.c.res_type != "AuditEvent")).scalar_one()
            for table in (resource, resource_version)
        )
        return tuple(data) + tuple(
            conn.execute(select(func.count()).select_from(table)).scalar_one() for table in (oauth_client, oauth_jti)
        ) + (conn.execute(select(func.max(resource.c.version_id))).scalar_one(),)


def test_malformed_requests_never_5xx_and_change_nothing(fuzz_app: tuple[Flask, str]) -> None:
    app, token = fuzz_app
    web: FlaskClient = app.test_client()
    before = _snapshot(app)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request_strategy)
    def run(req: dict) -> None:
        headers = {"Accept": req["accept"], **req["extra"]}
        if req["content_type"]:
            headers["Content-Type"] = req["content_type"]
        payload = req["body"]
        if req["authenticated"]:
            headers["Authorization"] = f"Bearer {token}"
            payload = _never_valid(payload)
        url = req["path"] + ("?" + req["query"] if req["query"] else "")
        # What an HTTP client can send at all: latin-1 header values on one line.
        headers = {
            k: v.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")
            for k, v in headers.items()
        }
        response = web.open(url, method=req["method"], data=payload, headers=headers)
        assert response.status_code < 500, (url, req["method"], response.get_data(as_text=True)[:500])
        if response.status_code >= 400 and req["method"] != "HEAD":
            body = response.get_json(silent=True) or {}
            assert body.get("resourceType") == "OperationOutcome" or "error" in body, response.get_data()[
                :300
            ]
            assert "Traceback" not in response.get_data(as_text=True)

    run()
    assert _snapshot(app) == before
