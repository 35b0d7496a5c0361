"""Each rule kind of the profile validator, with one conforming and one failing instance.

The profiles here are small test-only StructureDefinitions on the real R4 core snapshots, so
each test shows the rule it is about and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhirsrv.validation.codes import LocalCodeChecker
from fhirsrv.validation.definitions import DirectorySource
from fhirsrv.validation.profile import ProfileValidator

T = "https://test.example.org/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
SYS_A = "https://test.example.org/CodeSystem/a"


class FakeCodes:
    """Knows one ValueSet of system A with codes x and y."""

    def validate_code(self, valueset_url: str, system: str | None, code: str) -> bool | None:
        if valueset_url != "https://test.example.org/ValueSet/a":
            return None
        return system in (None, SYS_A) and code in ("x", "y")


def _el(el_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": el_id, "path": ".".join(p.split(":")[0] for p in el_id.split(".")), **kw}


def _profile(name: str, res_type: str, elements: list[dict], base: str | None = None) -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": T + name,
        "name": name,
        "type": res_type,
        "kind": "resource",
        "derivation": "constraint",
        "baseDefinition": base or CORE + res_type,
        "differential": {"element": elements},
    }


def _extension(name: str, value_type: str) -> dict:
    sd = _profile(name, "Extension", [_el("Extension.url", fixedUri=T + name)])
    sd["differential"]["element"].append(_el("Extension.value[x]", min=1, type=[{"code": value_type}]))
    return sd


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    source = DirectorySource()
    hs = "HealthcareService"
    source.add(_profile("card", hs, [_el(f"{hs}.name", min=1), _el(f"{hs}.location", max="1")]))
    source.add(_profile("fixed", hs, [_el(f"{hs}.active", fixedBoolean=True)]))
    source.add(
        _profile("pattern", hs, [_el(f"{hs}.type", patternCodeableConcept={"coding": [{"system": SYS_A}]})])
    )
    vs = "https://test.example.org/ValueSet/a"
    source.add(
        _profile(
            "bindings",
            hs,
            [
                _el(f"{hs}.type", binding={"strength": "required", "valueSet": vs}),
                _el(f"{hs}.category", binding={"strength": "extensible", "valueSet": vs}),
                _el(
                    f"{hs}.program",
                    binding={"strength": "required", "valueSet": "https://nowhere/ValueSet/z"},
                ),
            ],
        )
    )
    source.add(_extension("ext-int", "integer"))
    source.add(
        _profile(
            "ext",
            hs,
            [
                _el(
                    f"{hs}.extension",
                    slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
                ),
                _el(
                    f"{hs}.extension:count",
                    sliceName="count",
                    min=1,
                    max="1",
                    type=[{"code": "Extension", "profile": [T + "ext-int"]}],
                ),
            ],
        )
    )
    source.add(
        _profile(
            "slices",
            hs,
            [
                _el(
                    f"{hs}.specialty",
                    slicing={
                        "discriminator": [{"type": "value", "path": "coding.system"}],
                        "rules": "closed",
                    },
                ),
                _el(
                    f"{hs}.specialty:a",
                    sliceName="a",
                    min=1,
                    max="1",
                    binding={"strength": "required", "valueSet": vs},
                ),
                _el(f"{hs}.specialty:a.coding.system", fixedUri=SYS_A),
            ],
        )
    )
    source.add(
        _profile(
            "invariant",
            hs,
            [
                _el(
                    hs,
                    constraint=[
                        {
                            "key": "t-1",
                            "severity": "error",
                            "human": "needs a phone",
                            "expression": "telecom.where(system = 'phone').exists()",
                        }
                    ],
                )
            ],
        )
    )
    source.add(_profile("derived", hs, [_el(f"{hs}.comment", min=1)], base=T + "card"))
    source.add(_profile("choice", "Provenance", [_el("Provenance.occurred[x]", type=[{"code": "Period"}])]))
    return ProfileValidator(source, FakeCodes())


def _errors(validator: ProfileValidator, res: dict, name: str) -> list[tuple[str, list[str]]]:
    return [(i.code, i.expression) for i in validator.validate(res, T + name) if i.severity == "error"]


HS = {"resourceType": "HealthcareService"}


def test_minimum_cardinality(validator: ProfileValidator) -> None:
    assert _errors(validator, HS | {"name": "Offre"}, "card") == []
    assert _errors(validator, HS, "card") == [("required", ["HealthcareService.name"])]


def test_maximum_cardinality(validator: ProfileValidator) -> None:
    two = HS | {"name": "n", "location": [{"reference": "Location/1"}, {"reference": "Location/2"}]}
    assert _errors(validator, two, "card") == [("invalid", ["HealthcareService.location"])]


def test_base_profile_rules_apply_through_derivation(validator: ProfileValidator) -> None:
    assert _errors(validator, HS | {"name": "n", "comment": "c"}, "derived") == []
    assert _errors(validator, HS | {"comment": "c"}, "derived") == [("required", ["HealthcareService.name"])]


def test_fixed_value(validator: ProfileValidator) -> None:
    assert _errors(validator, HS | {"active": True}, "fixed") == []
    assert _errors(validator, HS | {"active": False}, "fixed") == [("value", ["HealthcareService.active"])]


def test_pattern_value(validator: ProfileValidator) -> None:
    ok = HS | {"type": [{"coding": [{"system": SYS_A, "code": "x"}], "text": "t"}]}
    bad = HS | {"type": [{"coding": [{"system": "https://other", "code": "x"}]}]}
    assert _errors(validator, ok, "pattern") == []
    assert _errors(validator, bad, "pattern") == [("value", ["HealthcareService.type[0]"])]


def test_required_binding(validator: ProfileValidator) -> None:
    ok = HS | {"type": [{"coding": [{"system": SYS_A, "code": "x"}]}]}
    bad = HS | {"type": [{"coding": [{"system": SYS_A, "code": "nope"}]}]}
    assert _errors(validator, ok, "bindings") == []
    assert _errors(validator, bad, "bindings") == [("code-invalid", ["HealthcareService.type[0]"])]


def test_extensible_binding_is_a_warning(validator: ProfileValidator) -> None:
    res = HS | {"category": [{"coding": [{"system": SYS_A, "code": "other"}]}]}
    issues = validator.validate(res, T + "bindings")
    assert [(i.severity, i.expression) for i in issues] == [("warning", ["HealthcareService.category[0]"])]


def test_unknown_valueset_is_a_warning_not_an_error(validator: ProfileValidator) -> None:
    res = HS | {"program": [{"coding": [{"system": SYS_A, "code": "x"}]}]}
    issues = validator.validate(res, T + "bindings")
    assert [(i.severity, i.code) for i in issues] == [("warning", "not-supported")]


def test_core_required_binding_on_datatype(validator: ProfileValidator) -> None:
    ok = HS | {"name": "n", "telecom": [{"system": "phone", "value": "1"}]}
    bad = HS | {"name": "n", "telecom": [{"system": "fax2", "value": "1"}]}
    real = ProfileValidator(DirectorySource(), LocalCodeChecker())
    assert real.validate(ok, CORE + "HealthcareService") == []
    errs = [(i.code, i.expression) for i in real.validate(bad, CORE + "HealthcareService")]
    assert errs == [("code-invalid", ["HealthcareService.telecom[0].system"])]


def test_extension_slice_by_url_with_value_type(validator: ProfileValidator) -> None:
    ok = HS | {"extension": [{"url": T + "ext-int", "valueInteger": 3}]}
    wrong_type = HS | {"extension": [{"url": T + "ext-int", "valueString": "3"}]}
    missing = HS | {"extension": [{"url": "https://unrelated", "valueString": "x"}]}
    assert _errors(validator, ok, "ext") == []
    errs = _errors(validator, wrong_type, "ext")
    assert ("invalid", ["HealthcareService.extension[0].valueString"]) in errs
    assert ("required", ["HealthcareService.extension[0].value[x]"]) in errs
    assert _errors(validator, missing, "ext") == [
        ("required", [f"HealthcareService.extension('{T}ext-int')"])
    ]


def test_slicing_by_coding_system(validator: ProfileValidator) -> None:
    ok = HS | {"specialty": [{"coding": [{"system": SYS_A, "code": "y"}]}]}
    assert _errors(validator, ok, "slices") == []
    missing = HS | {"specialty": []}
    assert _errors(validator, missing, "slices") == [("required", ["HealthcareService.specialty"])]
    wrong_system = HS | {"specialty": [{"coding": [{"system": "https://other", "code": "y"}]}]}
    assert _errors(validator, wrong_system, "slices") == [
        ("invalid", ["HealthcareService.specialty[0]"]),
        ("required", ["HealthcareService.specialty"]),
    ]
    bad_code = HS | {"specialty": [{"coding": [{"system": SYS_A, "code": "zz"}]}]}
    assert _errors(validator, bad_code, "slices") == [("code-invalid", ["HealthcareService.specialty[0]"])]


def test_invariant(validator: ProfileValidator) -> None:
    ok = HS | {"telecom": [{"system": "phone", "value": "02 61 91 00 00"}]}
    bad = HS | {"telecom": [{"system": "url", "value": "https://example.org"}]}
    assert _errors(validator, ok, "invariant") == []
    errs = validator.validate(bad, T + "invariant")
    assert [(i.code, i.expression) for i in errs if i.severity == "error"] == [
        ("invariant", ["HealthcareService"])
    ]
    assert "t-1" in errs[0].diagnostics


def test_choice_type_restriction(validator: ProfileValidator) -> None:
    prov = {
        "resourceType": "Provenance",
        "target": [{"reference": "HealthcareService/1"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Organization/1"}}],
    }
    ok = copy.deepcopy(prov) | {"occurredPeriod": {"start": "2026-01-01"}}
    bad = copy.deepcopy(prov) | {"occurredDateTime": "2026-01-01"}
    assert _errors(validator, ok, "choice") == []
    assert _errors(validator, bad, "choice") == [("invalid", ["Provenance.occurredDateTime"])]


def test_unknown_profile_and_wrong_type(validator: ProfileValidator) -> None:
    assert [i.code for i in validator.validate(HS, T + "missing")] == ["not-found"]
    assert [i.code for i in validator.validate({"resourceType": "Location"}, T + "card")] == ["invalid"]


def test_server_assigned_meta_is_not_required_from_clients() -> None:
    source = DirectorySource()
    source.add(_profile("meta", "HealthcareService", [_el("HealthcareService.meta.lastUpdated", min=1)]))
    lenient = ProfileValidator(source)
    strict = ProfileValidator(source, server_assigned=frozenset())
    res = HS | {"meta": {"source": "#import"}}
    assert lenient.validate(res, T + "meta") == []
    assert [i.expression for i in strict.validate(res, T + "meta")] == [
        ["HealthcareService.meta.lastUpdated"]
    ]
