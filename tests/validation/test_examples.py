"""The shipped examples conform to the SOS profiles and to the ROR profiles beneath them;
broken copies of them fail where a client would expect, and the ROR's own examples pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhirsrv.validation import SOS_PROFILES, default_validator, validate_resource
from fhirsrv.validation.structure import validate_structure

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "profiles" / "examples").glob("*.json"))
ROR_EXAMPLES = sorted((Path(__file__).parent / "fixtures" / "ror-examples").glob("*.json"))
ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
SOS = "https://sos.example.org/fhir"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _errors(res: dict, *urls: str) -> list[tuple[str, list[str]]]:
    return [(i.code, i.expression) for i in validate_resource(res, urls) if i.severity in ("error", "fatal")]


def _example(name: str) -> dict:
    return copy.deepcopy(_load(ROOT / "profiles" / "examples" / name))


def test_every_sos_profile_has_an_example() -> None:
    covered = {_load(p)["meta"]["profile"][0] for p in EXAMPLES}
    assert set(SOS_PROFILES.values()) <= covered


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_conforms_to_its_sos_profile_and_the_ror_base(path: Path) -> None:
    res = _load(path)
    assert validate_structure(res) == []
    profile = res["meta"]["profile"][0]
    assert _errors(res, profile) == []
    base = default_validator().snapshots.get(profile).sd["baseDefinition"]
    assert _errors(res, base) == []


@pytest.mark.parametrize("path", ROR_EXAMPLES, ids=lambda p: p.stem)
def test_ror_example_conforms_to_the_ror_profile(path: Path) -> None:
    res = _load(path)
    assert validate_structure(res) == []
    assert _errors(res, *res["meta"]["profile"]) == []


def test_ror_examples_cover_the_four_ror_profiles() -> None:
    claimed = {_load(p)["meta"]["profile"][0] for p in ROR_EXAMPLES}
    assert claimed == {
        ROR + t for t in ("ror-healthcareservice", "ror-organization", "ror-location", "ror-practitionerrole")
    }


HCS = "HealthcareService-sos-apa-rennes.json"
HCS_PROFILE = SOS_PROFILES["HealthcareService"]


def test_missing_provider_fails_on_provided_by() -> None:
    res = _example(HCS)
    del res["providedBy"]
    assert _errors(res, HCS_PROFILE) == [("required", ["HealthcareService.providedBy"])]
    assert _errors(res, ROR + "ror-healthcareservice") == []  # the ROR itself does not require it


def test_missing_ror_care_mode_fails_on_the_sos_and_the_ror_profile() -> None:
    res = _example(HCS)
    res["characteristic"] = [c for c in res["characteristic"] if "R213" not in c["coding"][0]["system"]]
    expected = [("required", ["HealthcareService.characteristic"])]
    assert _errors(res, HCS_PROFILE) == expected
    assert _errors(res, ROR + "ror-healthcareservice") == expected


def test_unknown_sos_category_code_fails() -> None:
    res = _example(HCS)
    res["specialty"][1]["coding"][0]["code"] = "reiki"
    assert _errors(res, HCS_PROFILE) == [("code-invalid", ["HealthcareService.specialty[1]"])]


def test_sos_service_with_the_wrong_system_leaves_the_slice_empty() -> None:
    res = _example(HCS)
    res["specialty"][1]["coding"][0]["system"] = f"{SOS}/CodeSystem/sos-audience"
    assert _errors(res, HCS_PROFILE) == [("required", ["HealthcareService.specialty"])]


def test_audience_code_from_another_axis_fails() -> None:
    res = _example(HCS)
    audience = next(c for c in res["characteristic"] if c["coding"][0]["system"].endswith("sos-audience"))
    audience["coding"][0]["code"] = "apres-traitement"
    index = res["characteristic"].index(audience)
    assert _errors(res, HCS_PROFILE) == [("code-invalid", [f"HealthcareService.characteristic[{index}]"])]


def test_extension_value_of_the_wrong_type_fails() -> None:
    res = _example(HCS)
    delay = next(e for e in res["extension"] if e["url"].endswith("sos-appointment-delay"))
    index = res["extension"].index(delay)
    delay.pop("valueDuration")
    delay["valueString"] = "deux semaines"
    errs = _errors(res, HCS_PROFILE)
    assert ("invalid", [f"HealthcareService.extension[{index}].valueString"]) in errs


def test_patient_type_needs_an_age_range_bound() -> None:
    res = _example(HCS)
    patient = next(e for e in res["extension"] if e["url"].endswith("patient-type"))
    index = res["extension"].index(patient)
    del patient["extension"][0]["valueRange"]["high"]
    where = f"HealthcareService.extension[{index}].extension[0].valueRange.high"
    assert _errors(res, HCS_PROFILE) == [("required", [where])]


def test_entry_lifecycle_status_must_be_a_known_status() -> None:
    res = _example(HCS)
    lifecycle = next(e for e in res["extension"] if e["url"].endswith("sos-entry-lifecycle"))
    index = res["extension"].index(lifecycle)
    lifecycle["extension"][0]["valueCode"] = "approved-by-me"
    where = f"HealthcareService.extension[{index}].extension[0].valueCode"
    assert _errors(res, HCS_PROFILE) == [("code-invalid", [where])]


def test_contact_needs_phone_or_email() -> None:
    res = _example(HCS)
    for t in res["telecom"]:
        t["system"] = "url"
    errs = _errors(res, HCS_PROFILE)
    assert errs == [("invariant", ["HealthcareService"])]


def test_ror_telecom_rules_apply_to_sos_entries() -> None:
    res = _example(HCS)
    res["telecom"][0]["extension"] = res["telecom"][0]["extension"][1:]
    where = "HealthcareService.telecom[0].extension('" + ROR + "ror-telecom-communication-channel')"
    assert _errors(res, HCS_PROFILE) == [("required", [where])]


def test_location_without_position_fails() -> None:
    res = _example("Location-sos-lieu-rennes-centre.json")
    del res["position"]
    assert _errors(res, SOS_PROFILES["Location"]) == [("required", ["Location.position"])]
    res = _example("Location-sos-lieu-rennes-centre.json")
    res["position"]["latitude"] = 148.1
    assert _errors(res, SOS_PROFILES["Location"]) == [("invariant", ["Location.position.latitude"])]


def test_organization_structure_type_is_required() -> None:
    res = _example("Organization-sos-asso-bien-etre-rennes.json")
    res["type"][0]["coding"][0]["system"] = "https://example.org/other"
    assert _errors(res, SOS_PROFILES["Organization"]) == [("required", ["Organization.type"])]


def test_finess_identifier_uses_the_national_system() -> None:
    res = _example("Organization-sos-chu-exemple.json")
    res["identifier"][0]["system"] = "https://example.org/finess"
    assert _errors(res, SOS_PROFILES["Organization"]) == [("value", ["Organization.identifier[0].system"])]


def test_practitioner_role_needs_its_structure() -> None:
    res = _example("PractitionerRole-sos-referent-asso-rennes.json")
    del res["organization"]
    assert _errors(res, SOS_PROFILES["PractitionerRole"]) == [("required", ["PractitionerRole.organization"])]


def test_endpoint_address_is_a_mailto() -> None:
    res = _example("Endpoint-sos-mss-asso-rennes.json")
    res["address"] = "https://example.org/mail"
    assert _errors(res, SOS_PROFILES["Endpoint"]) == [("invariant", ["Endpoint"])]
