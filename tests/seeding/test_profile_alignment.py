"""The seed's FHIR shapes agree with the fixed values and cardinalities of the SOS and ROR profiles.

Reads the profiles' JSON (profiles/sos, profiles/ror, written by profiles/build.py) rather than
copying their values, so a profile change that the seed does not follow makes this fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.seeding import resources as shapes
from tests.seeding.helpers import read_dir

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


def _differential(folder: str, sd_id: str) -> dict[str, dict[str, Any]]:
    path = PROFILES / folder / f"StructureDefinition-{sd_id}.json"
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not built (python profiles/build.py)")
    return {e["id"]: e for e in json.loads(path.read_text(encoding="utf-8"))["differential"]["element"]}


@pytest.fixture(scope="module")
def demo() -> dict[str, list[dict[str, Any]]]:
    return read_dir(ROOT / "seed" / "demo")


def test_identifier_and_endpoint_systems_are_those_the_profiles_fix(demo):
    org = _differential("sos", "sos-organization")
    assert org["Organization.identifier:finess.system"]["fixedUri"] == shapes.FINESS
    assert org["Organization.identifier:sirene.system"]["fixedUri"] == shapes.SIRENE
    endpoint = _differential("sos", "sos-endpoint")
    pattern = endpoint["Endpoint.connectionType"]["patternCoding"]
    for res in demo["Endpoint"]:
        assert {k: res["connectionType"][k] for k in pattern} == pattern


def test_every_ror_mandatory_extension_is_present(demo):
    required = {
        "HealthcareService": ("ror-healthcareservice", ["ror-meta-creation-date", "ror-healthcareservice-sensitive-unit", "ror-healthcareservice-patient-type"]),
        "Organization": ("ror-organization", ["ror-meta-creation-date"]),
        "Location": ("ror-location", ["ror-meta-creation-date", "ror-commune-cog"]),
        "PractitionerRole": ("ror-practitionerrole", ["ror-meta-creation-date", "ror-practitionerrole-unit-exercise-mode"]),
    }  # fmt: skip
    for res_type, (sd_id, names) in required.items():
        diff = _differential("ror", sd_id)
        for name in names:
            assert diff[f"{res_type}.extension:{name}"]["min"] == 1, (res_type, name)
        for res in demo[res_type]:
            urls = {e["url"] for e in res.get("extension", [])}
            assert {f"{shapes.ROR_SD}/{n}" for n in names} <= urls, res["id"]


def test_every_contact_point_has_the_ror_channel_and_confidentiality(demo):
    def contact_points(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = (
                [node]
                if "system" in node and "value" in node and node.get("system") in ("phone", "email")
                else []
            )
            return found + [c for v in node.values() for c in contact_points(v)]
        if isinstance(node, list):
            return [c for item in node for c in contact_points(item)]
        return []

    wanted = {shapes.ROR_CHANNEL, shapes.ROR_TELECOM_CONFIDENTIALITY}
    for resources in demo.values():
        for res in resources:
            for cp in contact_points(res):
                assert wanted <= {e["url"] for e in cp.get("extension", [])}, res["id"]


def test_ror_cardinalities_the_seed_must_respect(demo):
    role = _differential("ror", "ror-practitionerrole")
    assert role["PractitionerRole.healthcareService"]["max"] == "1"
    assert role["PractitionerRole.telecom"]["max"] == "1"
    for res in demo["PractitionerRole"]:
        assert len(res["healthcareService"]) == 1 and len(res["telecom"]) == 1 and len(res["code"]) == 1
    service = _differential("ror", "ror-healthcareservice")
    assert service["HealthcareService.availableTime"]["max"] == "1"
    for res in demo["HealthcareService"]:
        assert len(res.get("availableTime", [])) <= 1
        assert len(res["identifier"]) == 1 and len(res["type"]) == 1
