"""The terminology operations over HTTP as a client calls them: POST Parameters bodies, instance
level, scope-based $translate, nesting, active-only, wrong displays and the errors."""

from __future__ import annotations

from typing import Any

import pytest

import fhirsrv.interactions.terminology_ops  # noqa: F401  (registers the operations)
from fhirsrv.interactions.load import load_paths
from fhirsrv.interactions.operations import OperationRegistry
from fhirsrv.wiring import OPERATION_MODULES


def registered() -> list:
    return OperationRegistry(OPERATION_MODULES).registered()

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R338 = "https://mos.esante.gouv.fr/NOS/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    services = app.extensions["fhirsrv"]
    load_paths(services, [services.settings.terminology_dir])
    return app.test_client()


def post(client, path: str, *params: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post(
        path, json={"resourceType": "Parameters", "parameter": list(params)}, headers=FHIR_JSON
    )


def value(body: dict[str, Any], name: str) -> Any:
    for p in body["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    raise KeyError(name)


def matches(body: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for p in body["parameter"]:
        if p["name"] == "match":
            parts = {q["name"]: q for q in p["part"]}
            coding = parts["concept"]["valueCoding"]
            out.add((parts["equivalence"]["valueCode"], coding["system"], coding["code"]))
    return out


def test_operations_declare_their_r4_definitions():
    defs = {(op.name, op.resource_types, op.definition) for op in registered()}
    spec = "http://hl7.org/fhir/OperationDefinition/"
    assert ("validate-code", ("CodeSystem",), spec + "CodeSystem-validate-code") in defs
    assert ("validate-code", ("ValueSet",), spec + "ValueSet-validate-code") in defs
    for name, rtype, definition in [
        ("lookup", "CodeSystem", "CodeSystem-lookup"),
        ("subsumes", "CodeSystem", "CodeSystem-subsumes"),
        ("expand", "ValueSet", "ValueSet-expand"),
        ("translate", "ConceptMap", "ConceptMap-translate"),
    ]:
        assert (name, (rtype,), spec + definition) in defs
    # $closure is a system-level operation ([base]/$closure) that changes state: POST only
    closure = next(op for op in registered() if op.name == "closure")
    assert closure.system_level and closure.affects_state and not closure.resource_types
    assert closure.definition == spec + "ConceptMap-closure"


def test_lookup_by_post_coding_and_at_instance_level(client):
    body = post(
        client,
        "/fhir/CodeSystem/$lookup",
        {"name": "coding", "valueCoding": {"system": CAT, "code": "sp-emspt"}},
        {"name": "displayLanguage", "valueCode": "en"},
    ).get_json()
    assert value(body, "display") == "Territorial palliative care mobile team"
    assert value(body, "version") == "1.0.0" and value(body, "name") == "SOSCategory"
    instance = client.get("/fhir/CodeSystem/sos-category/$lookup?code=eri").get_json()
    assert value(instance, "display") == "Espace de rencontres et d'information (ERI)"
    assert client.get("/fhir/CodeSystem/no-such-cs/$lookup?code=eri").status_code == 404


def test_validate_code_wrong_display_and_coding(client):
    vs = f"{BASE}/ValueSet/sos-category"
    english = client.get(
        f"/fhir/ValueSet/$validate-code?url={vs}&system={CAT}&code=douleur&display=Pain management"
    )
    assert value(english.get_json(), "result") is True  # an English designation is a valid display
    wrong = post(
        client,
        "/fhir/ValueSet/$validate-code",
        {"name": "url", "valueUri": vs},
        {"name": "coding", "valueCoding": {"system": CAT, "code": "douleur", "display": "Douleurs"}},
    )
    assert wrong.status_code == 200
    body = wrong.get_json()
    assert value(body, "result") is False and "Prise en charge de la douleur" in value(body, "message")
    unknown = client.get(f"/fhir/ValueSet/sos-category/$validate-code?system={CAT}&code=massage")
    assert unknown.status_code == 200 and value(unknown.get_json(), "result") is False
    assert "massage" in value(unknown.get_json(), "message")
    other_system = client.get(f"/fhir/ValueSet/$validate-code?url={vs}&system={R211}&code=douleur")
    assert value(other_system.get_json(), "result") is False
    cs = client.get("/fhir/CodeSystem/sos-category/$validate-code?code=sophrologie&display=Sophrologie")
    assert value(cs.get_json(), "result") is True
    assert client.get("/fhir/CodeSystem/$validate-code?url=http://unknown&code=x").status_code == 404


def test_subsumes_with_codings_and_at_instance_level(client):
    body = post(
        client,
        "/fhir/CodeSystem/$subsumes",
        {"name": "codingA", "valueCoding": {"system": CAT, "code": "sp-usp"}},
        {"name": "codingB", "valueCoding": {"system": CAT, "code": "soins-palliatifs"}},
    ).get_json()
    assert value(body, "outcome") == "subsumed-by"
    instance = client.get("/fhir/CodeSystem/sos-category/$subsumes?codeA=sp-usp&codeB=douleur").get_json()
    assert value(instance, "outcome") == "not-subsumed"
    assert client.get(f"/fhir/CodeSystem/$subsumes?system={CAT}&codeA=douleur").status_code == 400
    assert client.get("/fhir/CodeSystem/$subsumes?system=http://unknown&codeA=a&codeB=b").status_code == 404


def test_expand_instance_nesting_active_only_and_errors(client):
    nested = client.get("/fhir/ValueSet/sos-category/$expand?excludeNested=false").get_json()
    roots = nested["expansion"]["contains"]
    assert len(roots) == 13
    pain = next(c for c in roots if c["code"] == "douleur")
    assert "douleur-consultation-douleur-chronique" in {c["code"] for c in pain["contains"]}
    flat = client.get("/fhir/ValueSet/sos-category/$expand").get_json()
    assert len(flat["expansion"]["contains"]) == flat["expansion"]["total"] == 78
    structures = client.get(f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/sos-structure-type&activeOnly=true")
    assert "professionnel-liberal" not in {c["code"] for c in structures.get_json()["expansion"]["contains"]}
    english = post(
        client,
        "/fhir/ValueSet/$expand",
        {"name": "url", "valueUri": f"{BASE}/ValueSet/sos-care-phase"},
        {"name": "filter", "valueString": "apres"},
        {"name": "displayLanguage", "valueCode": "en"},
    ).get_json()
    assert [(c["code"], c["display"]) for c in english["expansion"]["contains"]] == [
        ("apres-traitement", "After treatment (survivorship)")
    ]
    assert client.get("/fhir/ValueSet/sos-category/$expand?count=-1").status_code == 400
    assert client.get("/fhir/ValueSet/$expand").status_code == 400
    assert client.get("/fhir/ValueSet/no-such-vs/$expand").status_code == 404


def test_translate_reverse_instance_and_scope(client):
    place = client.get(
        f"/fhir/ConceptMap/sos-care-place-to-ror/$translate?system={R338}&code=27&reverse=true"
    )
    assert matches(place.get_json()) == {("equivalent", f"{BASE}/CodeSystem/sos-care-place", "domicile")}
    support = post(
        client,
        "/fhir/ConceptMap/$translate",
        {"name": "coding", "valueCoding": {"system": R211, "code": "414"}},
        {"name": "reverse", "valueBoolean": True},
        {"name": "target", "valueUri": f"{BASE}/ValueSet/sos-category"},
    ).get_json()
    found = {code for _, _, code in matches(support)}
    categories = {
        "douleur",
        "dietetique-nutrition",
        "psychologique",
        "social-familial-professionnel",
        "activite-physique-adaptee",
        "hygiene-de-vie",
        "soutien-proches-aidants",
        "preservation-fertilite",
        "troubles-sexualite",
        "soins-palliatifs",
        "bien-etre-image-de-soi",
        "reeducation-effets-secondaires",
        "eri",
    }
    assert categories <= found
    assert {e for e, _, _ in matches(support)} == {"narrower"}  # 414 is wider than each, read backwards
    assert "sophrologie" not in found  # PSNC are not asserted as supportive care
    forward = client.get(f"/fhir/ConceptMap/$translate?system={CAT}&code=sp-lisp&targetsystem={R211}")
    assert matches(forward.get_json()) == {("equivalent", R211, "076")}
    narrower = client.get(
        f"/fhir/ConceptMap/$translate?system={BASE}/CodeSystem/sos-age-group&code=personne-agee"
    )
    assert {(e, c) for e, _, c in matches(narrower.get_json())} == {("narrower", "01"), ("narrower", "03")}
    unmatched = client.get(
        f"/fhir/ConceptMap/sos-age-group-to-ror/$translate?system={BASE}/CodeSystem/sos-age-group&code=aja"
    )
    assert value(unmatched.get_json(), "result") is False
    assert client.get("/fhir/ConceptMap/$translate?code=douleur").status_code == 400
    assert client.get("/fhir/ConceptMap/$translate?system=http://unknown&code=x").status_code == 404
    assert client.get("/fhir/ConceptMap/no-such-map/$translate?code=x").status_code == 404
