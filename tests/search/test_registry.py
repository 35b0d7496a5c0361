"""Search parameter expressions compiled to direct walks (search/registry.py) find what FHIRPath
finds, and keep finding when FHIRPath would fail on the data."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpathpy import compile as fhirpath_compile

from fhirsrv.search.registry import R4_MODEL, _compile
from tests.api.helpers import org, post

DEPARTEMENT_URL = "https://sos.example.org/fhir/StructureDefinition/sos-departement"
# The SOS département parameter: the address's département extension, else the postal code's prefix.
DEPARTEMENT = (
    f"Organization.address.extension('{DEPARTEMENT_URL}').value.code | "
    f"Organization.address.where(extension('{DEPARTEMENT_URL}').value.code.empty()).postalCode.substring(0, 2)"
)


def _dep(code: str) -> list[dict[str, Any]]:
    return [{"url": DEPARTEMENT_URL, "valueCoding": {"code": code}}]


@pytest.mark.parametrize(
    "address",
    [
        {"postalCode": "29200"},
        {"postalCode": "2"},
        {"postalCode": "97110", "extension": _dep("971")},
        {"extension": _dep("2A")},
        {"city": "Brest"},
        {"postalCode": "29200", "extension": [{"url": "https://example.org/other", "valueString": "x"}]},
    ],
    ids=["postal-code", "short-postal-code", "extension-wins", "extension-only", "neither", "other-extension"],
)
def test_the_departement_walk_finds_what_fhirpath_finds_for_one_address(address: dict[str, Any]) -> None:
    res = {"resourceType": "Organization", "address": [address]}
    assert sorted(_compile(DEPARTEMENT)(res)) == sorted(str(v) for v in fhirpath_compile(DEPARTEMENT, model=R4_MODEL)(res))


def test_a_structure_with_two_addresses_is_found_in_both_departements(client) -> None:
    """FHIRPath's substring() fails on two postal codes at once, which once left such a
    structure in no département at all."""
    created = post(client, org("Ligue 29-35", address=[{"postalCode": "29200"}, {"postalCode": "35000"}]))
    assert created.status_code == 201
    oid = created.get_json()["id"]
    for departement in ("29", "35"):
        found = client.get(f"/fhir/Organization?departement={departement}").get_json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [oid], departement
    assert client.get("/fhir/Organization?departement=56").get_json().get("entry", []) == []
