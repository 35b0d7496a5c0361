"""The structural check refuses what R4 forbids, pointing at the element with a FHIRPath-like
expression; what the fhir.resources models refused before it is refused alike (the old check,
tests/validation/structure_oracle.py, says so), save where R4 says otherwise."""

from __future__ import annotations

import pytest

from fhirsrv.validation.structure import validate_structure
from tests.validation.structure_oracle import old_verdict


def test_valid_resource_has_no_issue() -> None:
    assert (
        validate_structure(
            {"resourceType": "Location", "name": "Lieu", "position": {"latitude": 48.1, "longitude": -1.6}}
        )
        == []
    )


def test_wrong_primitive_type_points_into_the_array() -> None:
    issues = validate_structure(
        {"resourceType": "HealthcareService", "telecom": [{"system": "phone", "value": 3}]}
    )
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("error", "structure", ["HealthcareService.telecom[0].value"])
    ]


def test_bad_date_format_and_unknown_element() -> None:
    issues = validate_structure(
        {"resourceType": "PractitionerRole", "period": {"start": "2020-13-01"}, "colour": "x"}
    )
    assert sorted(e for i in issues for e in i.expression) == [
        "PractitionerRole.colour",
        "PractitionerRole.period.start",
    ]


def test_unknown_resource_type() -> None:
    assert [i.code for i in validate_structure({"resourceType": "Bogus"})] == ["not-supported"]


# The R4 JSON format: what the lax models coerce or skip must be refused, since the server
# stores the JSON it received (https://hl7.org/fhir/R4/json.html).
STRICT_JSON_CASES = [
    ({"resourceType": "Organization", "name": "x", "active": "yes"}, "Organization.active"),
    ({"resourceType": "Organization", "name": "x", "active": 0}, "Organization.active"),
    (
        {"resourceType": "Location", "position": {"latitude": "48.1", "longitude": -1.6}},
        "Location.position.latitude",
    ),
    ({"resourceType": "Practitioner", "gender": None}, "Practitioner.gender"),
    ({"resourceType": "Practitioner", "name": []}, "Practitioner.name"),
    ({"resourceType": "Organization", "alias": []}, "Organization.alias"),
    ({"resourceType": "Organization", "alias": ["a", None]}, "Organization.alias[1]"),
    ({"resourceType": "Organization", "meta": {}}, "Organization.meta"),
    (
        {"resourceType": "Organization", "telecom": [{"system": "phone", "rank": 1.0}]},
        "Organization.telecom[0].rank",
    ),
    (
        {"resourceType": "Organization", "extension": [{"url": "http://x.org/e", "valueInteger": "3"}]},
        "Organization.extension[0].valueInteger",
    ),
    (
        {"resourceType": "Organization", "extension": [{"url": "http://x.org/e", "valueDecimal": "2.5"}]},
        "Organization.extension[0].valueDecimal",
    ),
    (
        {"resourceType": "HealthcareService", "availableTime": [{"allDay": "true"}]},
        "HealthcareService.availableTime[0].allDay",
    ),
    (
        {"resourceType": "Organization", "contained": [{"resourceType": "Location", "mode": None}]},
        "Organization.contained[0].mode",
    ),
]


@pytest.mark.parametrize(("res", "where"), STRICT_JSON_CASES)
def test_json_that_the_models_would_coerce_is_refused_at_its_element(res: dict, where: str) -> None:
    issues = validate_structure(res)
    assert [(i.severity, i.code, i.expression) for i in issues] == [("error", "structure", [where])]
    assert issues[0].diagnostics.startswith(f"{where}: ")


def test_the_json_forms_r4_allows_pass() -> None:
    assert (
        validate_structure(
            {
                "resourceType": "Organization",
                "active": False,
                "name": "Ligue",
                "alias": ["Ligue 29", None],
                "_alias": [None, {"extension": [{"url": "http://x.org/e", "valueBoolean": True}]}],
                "_name": {"id": "n1"},
                "telecom": [{"system": "phone", "value": "01 99 00 12 34", "rank": 1}],
                "extension": [
                    {"url": "http://x.org/d", "valueDecimal": 2},
                    {"url": "http://x.org/e", "valueDecimal": 2.5},
                ],
            }
        )
        == []
    )


def test_a_string_may_not_exceed_1mb() -> None:
    limit = 1024 * 1024
    fits = validate_structure({"resourceType": "Organization", "name": "é" * limit})
    assert fits == []
    issues = validate_structure({"resourceType": "Organization", "name": "é" * (limit + 1)})
    assert [i.expression for i in issues] == [["Organization.name"]]
    assert "1MB" in issues[0].diagnostics


# What the models used to check, now checked by the walk: each refused at its element.
def _paths(res: dict) -> list[str]:
    return sorted(e for i in validate_structure(res) for e in i.expression)


ORG = "Organization"


def org(**elements: object) -> dict:
    return {"resourceType": ORG, **elements}


def ext(**value: object) -> dict:
    """An Organization with one extension (its url, and the value given)."""
    return org(extension=[{"url": "u", **value}])


def contains(*resources: dict) -> dict:
    return org(contained=list(resources))


AUDIT = {"resourceType": "AuditEvent", "recorded": "2020-01-01T00:00:00Z", "agent": [{"requestor": True}]}
WALK_CASES = [
    (org(telecom=[{"system": "phone", "valeur": "x"}]), "Organization.telecom[0].valeur"),
    (org(_telecom={"id": "t"}), "Organization._telecom"),
    (org(meta={"author": {"reference": "Practitioner/p"}}), "Organization.meta.author"),
    (org(extension=[{"valueString": "x"}]), "Organization.extension[0].url"),
    (ext(valueString="x", valueCode="y"), "Organization.extension[0]"),
    (
        {"resourceType": "HealthcareService", "notAvailable": [{"during": {"start": "2020"}}]},
        "HealthcareService.notAvailable[0].description",
    ),
    ({**AUDIT, "source": {"observer": {"display": "x"}}}, "AuditEvent.type"),
    (org(language="fr  FR"), "Organization.language"),
    (org(id="a b"), "Organization.id"),
    (org(id="a" * 256), "Organization.id"),
    (org(name="\u00a0"), "Organization.name"),
    (
        {"resourceType": "Location", "position": {"longitude": 1.5, "latitude": float("inf")}},
        "Location.position.latitude",
    ),
    (ext(valueDate="2021-02-29"), "Organization.extension[0].valueDate"),
    (ext(valueDateTime="2021-01-01T10:00:00"), "Organization.extension[0].valueDateTime"),
    (ext(valueInstant="2021-01-01"), "Organization.extension[0].valueInstant"),
    (ext(valueTime="24:00:00"), "Organization.extension[0].valueTime"),
    (ext(valueOid="1.2.3"), "Organization.extension[0].valueOid"),
    (ext(valueUuid="urn:uuid:c757873d-ec9a-1326-a141-556f43239520"), "Organization.extension[0].valueUuid"),
    (ext(valueBase64Binary="abc"), "Organization.extension[0].valueBase64Binary"),
    (ext(valuePositiveInt=0), "Organization.extension[0].valuePositiveInt"),
    (contains({"resourceType": "Coding", "code": "a"}), "Organization.contained[0]"),
    (contains({"resourceType": "Patient", "birthDate": "2020-02-30"}), "Organization.contained[0].birthDate"),
    (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "gender": "x  y"}}],
        },
        "Bundle.entry[0].resource.gender",
    ),
]


@pytest.mark.parametrize(("res", "where"), WALK_CASES)
def test_what_the_models_checked_is_refused_at_its_element(res: dict, where: str) -> None:
    assert old_verdict(res) == (True, frozenset({where}))  # as the models did
    issues = validate_structure(res)
    assert [(i.severity, i.code, i.expression) for i in issues] == [("error", "structure", [where])]
    assert issues[0].diagnostics.startswith(f"{where}: ")


def test_a_required_primitive_may_be_an_extension_alone() -> None:
    absent = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    res = {"resourceType": "HealthcareService", "notAvailable": [{"_description": {"extension": [absent]}}]}
    assert validate_structure(res) == []
    res["notAvailable"][0]["_description"] = {"id": "d1"}  # an id alone does not stand for the value
    assert _paths(res) == ["HealthcareService.notAvailable[0].description"]


def test_a_wrong_value_is_not_reported_again_as_a_second_or_missing_one() -> None:
    res = {"resourceType": ORG, "extension": [{"url": "u", "valueString": "x", "valueBoolean": "yes"}]}
    assert _paths(res) == ["Organization.extension[0].valueBoolean"]


def test_the_values_r4_allows_pass() -> None:
    res = {
        "resourceType": ORG,
        "id": "a" * 64,
        "language": "fr-FR",
        "name": "Centre\u00a0de soins\u3000",
        "extension": [
            {"url": "u", "valueDateTime": "2016-12-31T23:59:60Z"},
            {"url": "u", "valueDate": "2020-02-29"},
            {"url": "u", "valueInstant": "2020-01-01T00:00:00.1234567+14:00"},
            {"url": "u", "valueTime": "23:59:60.5"},
            {"url": "u", "valueUuid": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"},
            {"url": "u", "valueOid": "urn:oid:1.2.250.1"},
            {"url": "u", "valueBase64Binary": "QUJD RA=="},
            {"url": "u", "valueUrl": "Organization/1"},
            {"url": "u", "valueDecimal": 1e-7},
        ],
        "contained": [{"resourceType": "Patient", "id": "p", "birthDate": "1970"}],
    }
    assert validate_structure(res) == []


# Where R4 wins over the models (see fhirsrv/validation/jsonformat.py): R4's verdict.
R4_REFUSES = [
    (contains({"id": "x"}), "Organization.contained[0]"),
    (contains({"resourceType": "DomainResource", "id": "x"}), "Organization.contained[0]"),
    (contains({"resourceType": "Bogus"}), "Organization.contained[0]"),
    (contains({"resourceType": "Citation", "status": "draft"}), "Organization.contained[0]"),
    (contains({"resourceType": 5}), "Organization.contained[0]"),
    (
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "r", "resource": {"resourceType": "SubscriptionStatus"}}],
        },
        "Parameters.parameter[0].resource",
    ),
    (org(fhir_comments="x"), "Organization.fhir_comments"),
    (org(name__ext={"id": "n"}), "Organization.name__ext"),
    (org(telecom=[{"resourceType": "ContactPoint", "value": "x"}]), "Organization.telecom[0].resourceType"),
    (
        ext(valueCodeableReference={"concept": {"text": "x"}}),
        "Organization.extension[0].valueCodeableReference",
    ),
    (contains({"resourceType": "MedicinalProduct"}), "Organization.contained[0].name"),
]


@pytest.mark.parametrize(("res", "where"), R4_REFUSES)
def test_r4_refuses_what_the_models_let_through_or_failed_on(res: dict, where: str) -> None:
    assert old_verdict(res) != (True, frozenset({where}))
    assert _paths(res) == [where]


def test_a_required_repeating_primitive_may_be_its_extensions_alone() -> None:
    absent = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    res = {
        "resourceType": "SearchParameter",
        "url": "http://x.org/sp",
        "name": "n",
        "status": "draft",
        "description": "d",
        "code": "c",
        "type": "token",
        "_base": [{"extension": [absent]}],
    }
    assert old_verdict(res) == (True, frozenset({"crash: AttributeError"}))  # the models failed: a 500
    assert validate_structure(res) == []
    res["_base"] = [{"id": "b"}]
    assert _paths(res) == ["SearchParameter.base"]


def test_r4_allows_what_the_models_refused() -> None:
    res = {
        "resourceType": ORG,
        "extension": [
            {"url": "u", "valueMeta": {"versionId": "1"}},
            {"url": "u", "valueString": "x", "_valueString": {"id": "v"}},
        ],
        "contained": [{"resourceType": "MedicinalProduct", "id": "m", "name": [{"productName": "X"}]}],
    }
    assert old_verdict(res)[0]
    assert validate_structure(res) == []
