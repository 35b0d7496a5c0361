"""One JSON log line per request: the request id, the caller, the interaction, the status and
the duration; the names of a search's parameters, never their values; a 500's stack without its
message. The lines are captured as `fhirsrv serve` writes them (fhirsrv/logformat.py).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.app import create_app
from fhirsrv.logformat import JsonFormatter
from fhirsrv.settings import Settings
from tests.api.helpers import FHIR, org, post

Lines = Callable[[], list[dict[str, Any]]]
PERSON = "Jeanne Kerhervé"
EMAIL = "jeanne.kerherve@example.org"


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every line the server's loggers write while the test runs, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fhirsrv")
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def requests_logged(lines: Lines) -> list[dict[str, Any]]:
    return [line for line in lines() if line["logger"] == "fhirsrv.request"]


def test_one_line_per_request_with_its_facts(client: FlaskClient, log_lines: Lines):
    created = post(client, org("Centre Kerhervé"))
    org_id = created.get_json()["id"]
    answer = client.get(f"/fhir/Organization/{org_id}", headers={"X-Request-ID": "lb-7f3a:2"})
    assert answer.headers["X-Request-ID"] == "lb-7f3a:2"
    client.get("/fhir/Organization/nothing-here")
    create, read, missing = requests_logged(log_lines)
    assert (create["interaction"], create["resource_type"], create["status"]) == ("create", "Organization", 201)
    assert read == read | {
        "request_id": "lb-7f3a:2",
        "client": "anonymous",
        "method": "GET",
        "interaction": "read",
        "resource_type": "Organization",
        "status": 200,
        "level": "info",
        "message": "request",
    }
    assert isinstance(read["duration_ms"], float) and read["duration_ms"] >= 0
    assert missing["status"] == 404 and missing["request_id"] != read["request_id"]
    assert org_id not in json.dumps(log_lines()), "a path's id is never logged"


@pytest.mark.parametrize(
    "given", ["", "x" * 129, "two words", f"id-{EMAIL}", "é-accent", "tab\tinside"]
)
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(client: FlaskClient, log_lines: Lines, given: str):
    answer = client.get("/fhir/metadata", headers={"X-Request-ID": given})
    echoed = answer.headers["X-Request-ID"]
    assert echoed != given and len(echoed) == 32 and int(echoed, 16) >= 0
    assert requests_logged(log_lines)[-1]["request_id"] == echoed


def test_a_search_logs_its_parameter_names_never_their_values(client: FlaskClient, log_lines: Lines):
    client.get(f"/fhir/Practitioner?name={PERSON}&email={EMAIL}&_count=2")
    client.get("/fhir/PractitionerRole?practitioner.name:contains=Kerh&_sort=-_lastUpdated")
    client.post(
        "/fhir/Practitioner/_search",
        data={"family": "Kerhervé", "given": "Jeanne"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # A criterion named after a person (refused: unknown) is "?", not the name.
    refused = client.get("/fhir/Practitioner?Kerherve=1")
    assert refused.status_code == 400
    get, chained, posted, unknown = requests_logged(log_lines)
    assert get["params"] == ["name", "email", "_count"]
    assert chained["params"] == ["practitioner.name:contains", "_sort"]
    assert (posted["interaction"], posted["params"]) == ("search-type", ["family", "given"])
    assert (unknown["params"], unknown["status"]) == (["?"], 400)
    written = json.dumps(log_lines(), ensure_ascii=False)
    for value in ("Jeanne", "Kerh", "Kerherve", "example.org", "-_lastUpdated"):
        assert value not in written, value


def test_bundles_are_named_batch_or_transaction(client: FlaskClient, log_lines: Lines):
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"request": {"method": "GET", "url": "metadata"}}]}
        client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    client.post("/fhir", data="{not json", headers={"Content-Type": FHIR})
    assert [(line["interaction"], line["resource_type"]) for line in requests_logged(log_lines)] == [
        ("batch", None), ("transaction", None), ("batch", None)
    ]


def test_a_client_is_named_by_its_id_never_by_its_name_nor_its_token(db_url: str, log_lines: Lines):
    from fhirsrv.auth.clients import add_client

    app = create_app(
        Settings.from_env(database_url=db_url, load_demo=False, base_url="http://fhir.test/fhir", auth=True)
    )
    web = app.test_client()
    try:
        with app.extensions["fhirsrv"].engine.begin() as conn:
            registered, secret = add_client(conn, PERSON, "system/*.rs", "partner-reader")
        client_id = registered.client_id
        assert secret is not None
        token = web.post(
            "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        ).get_json()["access_token"]
        web.get("/fhir/Organization", headers={"Authorization": f"Bearer {token}"})
        web.get("/fhir/Organization", headers={"Authorization": "Bearer forged.token.value"})
        web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, "wrong-secret"))
    finally:
        app.extensions["fhirsrv"].engine.dispose()
    issued, searched, forged, refused = requests_logged(log_lines)
    assert (issued["interaction"], issued["status"]) == ("token", 200)
    assert (searched["client"], searched["status"]) == (client_id, 200)
    assert (forged["client"], forged["status"]) == ("anonymous", 401)
    assert (refused["interaction"], refused["status"]) == ("token", 401)
    written = json.dumps(log_lines(), ensure_ascii=False)
    for secret_text in (token, secret, "forged.token.value", "wrong-secret", PERSON):
        assert secret_text not in written


def test_a_500_logs_the_type_and_stack_without_the_message(app: Flask, log_lines: Lines):
    def broken() -> str:
        raise ValueError(f"cannot file {PERSON} <{EMAIL}>")

    app.add_url_rule("/broken-for-the-test", "broken", broken)
    answer = app.test_client().get("/broken-for-the-test", headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500
    error = next(line for line in log_lines() if line["message"].startswith("unexpected error"))
    assert error["exc_type"] == "ValueError" and error["level"] == "error"
    assert "in broken" in error["stack"] and 'raise ValueError(f"cannot file' in error["stack"]
    assert error["request_id"] == "boom-1"
    request_line = requests_logged(log_lines)[-1]
    assert (request_line["status"], request_line["level"], request_line["request_id"]) == (500, "error", "boom-1")
    written = json.dumps(log_lines(), ensure_ascii=False)
    assert PERSON not in written and EMAIL not in written


def test_probes_are_quiet_when_they_pass(client: FlaskClient, log_lines: Lines):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert requests_logged(log_lines) == []
