"""A kick-off's parameters, as a job keeps them; the order and default types of an export."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from fhirsrv.access.principal import ANONYMOUS, SERVER, Principal
from fhirsrv.errors import Issue
from fhirsrv.resource_types import OWNED_TYPES, SUPPORTED_TYPES
from fhirsrv.sync.export_jobs import principal_from_json, principal_to_json
from fhirsrv.sync.export_request import EXPORT_ORDER, ExportRequest


def test_every_served_type_has_its_place_in_an_export() -> None:
    # Owned types (a client's Subscriptions) are no directory content: never exported.
    assert sorted(EXPORT_ORDER) == sorted(t for t in SUPPORTED_TYPES if t not in OWNED_TYPES)
    assert "Subscription" in OWNED_TYPES
    # What a structure's offers, places and roles point to comes first in a folder's name order.
    assert EXPORT_ORDER.index("Organization") < EXPORT_ORDER.index("HealthcareService")
    assert EXPORT_ORDER.index("SearchParameter") < EXPORT_ORDER.index("Organization")


def test_a_request_is_kept_as_it_was_checked() -> None:
    request = ExportRequest(
        ("Organization", "HealthcareService"),
        datetime(2026, 11, 28, 10, 0, 0, 123000),
        {"HealthcareService": ("service-type=x", "_id=a")},
        (Issue("warning", "not-supported", "ignored", ["x"]),),
    )
    assert ExportRequest.from_json(request.to_json()) == request


def test_a_job_keeps_its_callers_scopes_and_territory_but_not_its_name() -> None:
    caller = Principal.client(
        role="territorial-admin",
        client_id="c-1",
        name="DAC Finistère",
        scope="system/*.rs",
        departements=("29",),
        kind="dac",
        communes=("29019",),
    ).at("10.0.0.1")
    kept = principal_from_json(principal_to_json(caller))
    assert kept == replace(caller, name="", address=None)
    assert kept.may("HealthcareService", "s") and not kept.may("HealthcareService", "u")
    assert "DAC Finistère" not in principal_to_json(caller)
    assert principal_from_json(principal_to_json(ANONYMOUS)) is ANONYMOUS
    assert principal_from_json(principal_to_json(SERVER)) is SERVER
