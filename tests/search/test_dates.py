"""Date search at the exact edges of a value's implicit range, on both back-ends.

A day, a month or a year is the range of instants it covers; a Period runs from its start's
first instant to its end's last one, and on for ever when it has no end. Each prefix compares
those ranges as R4 says (https://hl7.org/fhir/R4/search.html#prefix), to the microsecond.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.search.directory import load

LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
ORG_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"


def _verified(sid: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": sid,
        "name": sid,
        "extension": [{"url": LIFECYCLE, "extension": [{"url": "lastVerified", "valueDate": day}]}],
    }


def _closed(oid: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "name": oid,
        "extension": [{"url": ORG_PERIOD, "valuePeriod": {"start": "2001-01-01", "end": end}}],
    }


def _role(rid: str, **period: str) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "id": rid, "period": period}


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(
        app.extensions["fhirsrv"],
        [
            _verified("hs-0702", "2026-07-02"),
            _verified("hs-0703a", "2026-07-03"),
            _verified("hs-0703b", "2026-07-03"),
            _verified("hs-0704", "2026-07-04"),
            _closed("org-2023", "2023-12-31T23:59:59Z"),
            _closed("org-2024-first-day", "2024-01-01"),
            _closed("org-2024-last-second", "2024-12-31T23:59:59Z"),
            # 00:30 in Paris on New Year's Day is 23:30 UTC the evening before: still 2024.
            _closed("org-2024-by-time-zone", "2025-01-01T00:30:00+01:00"),
            _closed("org-2025", "2025-01-01"),
            _role("role-from-2024", start="2024-01-01"),
            _role("role-until-2023", start="2020-01-01", end="2023-12-31"),
            _role("role-2024", start="2024-01-01", end="2024-12-31"),
        ],
    )
    return app.test_client()


def ids(client, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    res = client.get(f"/fhir/{query}")
    assert res.status_code == 200, res.get_json()
    return sorted(e["resource"]["id"] for e in res.get_json().get("entry", []))


def test_a_day_finds_what_was_verified_that_day_and_its_edges_hold(client):
    assert ids(client, "HealthcareService?last-verified=2026-07-03") == ["hs-0703a", "hs-0703b"]
    assert ids(client, "HealthcareService?last-verified=le2026-07-03") == ["hs-0702", "hs-0703a", "hs-0703b"]
    assert ids(client, "HealthcareService?last-verified=lt2026-07-03") == ["hs-0702"]
    assert ids(client, "HealthcareService?last-verified=ge2026-07-03") == ["hs-0703a", "hs-0703b", "hs-0704"]
    assert ids(client, "HealthcareService?last-verified=gt2026-07-03") == ["hs-0704"]
    assert ids(client, "HealthcareService?last-verified=ne2026-07-03") == ["hs-0702", "hs-0704"]
    assert ids(client, "HealthcareService?last-verified=2026-07") == [
        "hs-0702",
        "hs-0703a",
        "hs-0703b",
        "hs-0704",
    ]


def test_a_year_holds_its_first_day_its_last_second_and_what_a_time_zone_puts_in_it(client):
    assert ids(client, "Organization?period-end=2024") == [
        "org-2024-by-time-zone",
        "org-2024-first-day",
        "org-2024-last-second",
    ]
    assert ids(client, "Organization?period-end=eb2024") == ["org-2023"]
    assert ids(client, "Organization?period-end=sa2024") == ["org-2025"]
    assert ids(client, "Organization?period-end=2024-12-31T23:30:00Z") == ["org-2024-by-time-zone"]


def test_lt_and_le_leave_out_a_period_that_starts_on_the_bound(client):
    assert ids(client, "PractitionerRole?date=lt2024-01-01") == ["role-until-2023"]
    assert ids(client, "PractitionerRole?date=le2024-01-01") == ["role-until-2023"]
    # Without an end a period is open: it goes on after any date.
    assert ids(client, "PractitionerRole?date=ge2024-01-01") == ["role-2024", "role-from-2024"]
    assert ids(client, "PractitionerRole?date=gt2030") == ["role-from-2024"]
    assert ids(client, "PractitionerRole?date=sa2023-12-31") == ["role-2024", "role-from-2024"]
    assert ids(client, "PractitionerRole?date=eb2024-01-01") == ["role-until-2023"]
    assert ids(client, "PractitionerRole?date=2024") == ["role-2024"]
