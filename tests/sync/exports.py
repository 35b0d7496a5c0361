"""Helpers to run a bulk export as a client does: kick off, poll, read the manifest, download."""

from __future__ import annotations

import time
from typing import Any

import orjson
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

FHIR = "application/fhir+json"
ASYNC = {"Prefer": "respond-async", "Accept": FHIR}
BASE = "http://fhir.test"
# A generous bound on how long a small export may take on a busy machine: the test fails
# rather than hangs, and asserts nothing about the time itself.
WAIT_SECONDS = 120


def local(url: str) -> str:
    """A URL the server gave (on its public base) as the test client asks for it."""
    return url.removeprefix(BASE)


def kick_off(web: FlaskClient, url: str, headers: dict[str, str] | None = None, **kw: Any) -> str:
    """The status URL of a new export (asserting the 202)."""
    response = web.open(url, headers={**ASYNC, **(headers or {})}, **kw)
    assert response.status_code == 202, (response.status_code, response.get_json())
    return local(response.headers["Content-Location"])


def wait(web: FlaskClient, status: str, headers: dict[str, str] | None = None) -> TestResponse:
    """Poll the status URL until the job is no longer running (as a client does)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = web.get(status, headers=headers or {})
        if response.status_code != 202:
            return response
        assert response.headers["Retry-After"].isdigit() and response.headers["X-Progress"]
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.05)


def manifest(web: FlaskClient, status: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = wait(web, status, headers)
    assert response.status_code == 200, (response.status_code, response.get_json())
    return response.get_json()


def export(web: FlaskClient, url: str, headers: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return manifest(web, kick_off(web, url, headers, **kw), headers)


def lines(web: FlaskClient, url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = web.get(local(url), headers={**(headers or {}), "Accept": "application/fhir+ndjson"})
    assert response.status_code == 200, (response.status_code, response.get_json())
    assert response.mimetype == "application/fhir+ndjson"
    return [orjson.loads(line) for line in response.get_data().splitlines()]


def resources(
    web: FlaskClient, found: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, list[dict]]:
    """Every exported resource, by type, checking each file's count and type."""
    out: dict[str, list[dict]] = {}
    for item in found["output"]:
        got = lines(web, item["url"], headers)
        assert len(got) == item["count"] and {r["resourceType"] for r in got} <= {item["type"]}
        out.setdefault(item["type"], []).extend(got)
    return out


def ids(found: dict[str, list[dict]], res_type: str | None = None) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for t, rs in found.items() if res_type in (None, t) for r in rs}
