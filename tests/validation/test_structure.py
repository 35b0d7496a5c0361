"""Structural checks by the R4 models point at the offending element with a FHIRPath."""

from __future__ import annotations

import pytest

from fhirsrv.validation.structure import validate_structure


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
