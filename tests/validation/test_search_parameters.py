"""The SOS and ROR SearchParameters are valid FHIRPath and index what a user searches for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

ROOT = Path(__file__).resolve().parents[2]
PARAMS = sorted((ROOT / "profiles").glob("*/SearchParameter-*.json"))
EXAMPLES = ROOT / "profiles" / "examples"


def _param(sp_id: str) -> dict:
    return next(json.loads(p.read_text()) for p in PARAMS if p.stem == f"SearchParameter-{sp_id}")


def _param_code(path: Path) -> str:
    return json.loads(path.read_text())["code"]


def _values(sp_id: str, example: str) -> list:
    res = json.loads((EXAMPLES / example).read_text())
    return evaluate(res, _param(sp_id)["expression"], {}, models["r4"])


CHAIN = "https://sos.example.org/fhir/StructureDefinition/sos-search-chain"


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.stem)
def test_expression_evaluates_on_every_base_type(path: Path) -> None:
    sp = json.loads(path.read_text())
    assert sp["url"].endswith("/" + sp["id"])
    chain = [e["valueString"] for e in sp.get("extension", []) if e["url"] == CHAIN]
    if chain:
        # Searched as its chain; its FHIRPath goes through resolve(), which needs the referenced
        # resource (and which fhirpathpy does not implement): check the chain names real parameters.
        (reference, target) = chain[0].split(".")
        assert f".{reference}.resolve()" in sp["expression"]
        assert any(_param_code(p) == target for p in PARAMS)
        return
    for base in sp["base"]:
        assert evaluate({"resourceType": base}, sp["expression"], {}, models["r4"]) == []


def test_sos_category_indexes_only_the_catalogue_coding() -> None:
    values = _values("healthcareservice-sos-category", "HealthcareService-sos-apa-rennes.json")
    assert [v["code"] for v in values] == ["activite-physique-adaptee"]


def test_each_axis_indexes_its_own_codes() -> None:
    example = "HealthcareService-sos-apa-rennes.json"
    assert [v["code"] for v in _values("healthcareservice-audience", example)] == ["patient"]
    assert [v["code"] for v in _values("healthcareservice-care-phase", example)] == ["apres-traitement"]
    assert [v["code"] for v in _values("healthcareservice-pathway", example)] == [
        "parcours-soins-global-apres-cancer"
    ]


def test_departement_from_extension_or_postal_code() -> None:
    assert _values("location-departement", "Location-sos-lieu-rennes-centre.json") == ["35"]
    assert _values("organization-departement", "Organization-sos-asso-bien-etre-rennes.json") == ["35"]


def test_entry_status_and_ror_age_range() -> None:
    example = "HealthcareService-sos-apa-rennes.json"
    assert _values("directory-entry-status", example) == ["published"]
    assert [q["value"] for q in _values("ror-sp-healthcareservice-age-range-low", example)] == [18]
