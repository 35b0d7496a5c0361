"""Structural checks by the R4 models point at the offending element with a FHIRPath."""

from __future__ import annotations

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
