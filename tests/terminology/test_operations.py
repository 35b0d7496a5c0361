"""The terminology operations on the shipped SOS catalogue: French accents, hierarchy, basket,
ROR mappings, and the errors a client gets for unknown systems, codes and value sets."""

from __future__ import annotations

import pytest

from fhirsrv.text import fold

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


def params(body: dict) -> dict:
    return {
        p["name"]: next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        for p in body["parameter"]
    }


def codes(expansion: dict) -> list[str]:
    out = []
    for entry in expansion["expansion"].get("contains", []):
        out.append(entry["code"])
        out += [c["code"] for c in entry.get("contains", [])]
    return out


def test_lookup_gives_display_designation_properties_and_hierarchy(client):
    body = client.get(f"/fhir/CodeSystem/$lookup?system={CAT}&code=douleur").get_json()
    found = params(body)
    assert found["display"] == "Prise en charge de la douleur"
    english = [p for p in body["parameter"] if p["name"] == "designation"][0]["part"]
    assert {"name": "value", "valueString": "Pain management"} in english
    props = [
        {q["name"]: q.get("valueCode") for q in p["part"]}
        for p in body["parameter"]
        if p["name"] == "property"
    ]
    assert {"code": "basket", "value": "core"} in props
    assert {"code": "child", "value": "douleur-hypnoanalgesie"} in props
    child = params(
        client.get(f"/fhir/CodeSystem/$lookup?system={CAT}&code=douleur-hypnoanalgesie").get_json()
    )
    assert child["display"] == "Hypnoanalgésie"
    parent = client.get(f"/fhir/CodeSystem/$lookup?system={CAT}&code=douleur-hypnoanalgesie&property=parent")
    assert [p for p in parent.get_json()["parameter"] if p["name"] == "property"][0]["part"][1][
        "valueCode"
    ] == "douleur"
    english_display = client.get(f"/fhir/CodeSystem/$lookup?system={CAT}&code=douleur&displayLanguage=en")
    assert params(english_display.get_json())["display"] == "Pain management"


def test_lookup_errors(client):
    assert client.get(f"/fhir/CodeSystem/$lookup?system={CAT}&code=nope").status_code == 404
    assert client.get("/fhir/CodeSystem/$lookup?system=http://unknown&code=x").status_code == 404
    assert client.get(f"/fhir/CodeSystem/$lookup?system={CAT}").status_code == 400


def test_validate_code_on_code_system_and_value_set(client):
    ok = params(client.get(f"/fhir/CodeSystem/$validate-code?url={CAT}&code=eri").get_json())
    assert ok["result"] is True
    bad = params(client.get(f"/fhir/CodeSystem/$validate-code?url={CAT}&code=xyz").get_json())
    assert bad["result"] is False and "xyz" in bad["message"]
    wrong_display = client.get(f"/fhir/CodeSystem/$validate-code?url={CAT}&code=douleur&display=Douleur")
    assert params(wrong_display.get_json())["result"] is False
    in_basket = client.get(
        f"/fhir/ValueSet/$validate-code?url={BASE}/ValueSet/sos-inca-basket&system={CAT}"
        "&code=activite-physique-adaptee"
    ).get_json()
    assert params(in_basket)["result"] is True
    palliative = client.get(
        f"/fhir/ValueSet/$validate-code?url={BASE}/ValueSet/sos-inca-basket&system={CAT}"
        "&code=soins-palliatifs"
    ).get_json()
    assert params(palliative)["result"] is False
    assert client.get("/fhir/ValueSet/$validate-code?url=http://unknown/vs&code=x").status_code == 404


def test_subsumes(client):
    def outcome(a: str, b: str) -> str:
        return params(client.get(f"/fhir/CodeSystem/$subsumes?system={CAT}&codeA={a}&codeB={b}").get_json())[
            "outcome"
        ]

    assert outcome("douleur", "douleur-hypnoanalgesie") == "subsumes"
    assert outcome("douleur-hypnoanalgesie", "douleur") == "subsumed-by"
    assert outcome("douleur", "douleur") == "equivalent"
    assert outcome("douleur", "eri") == "not-subsumed"
    assert client.get(f"/fhir/CodeSystem/$subsumes?system={CAT}&codeA=douleur&codeB=nope").status_code == 400


@pytest.mark.parametrize("text", ["diet", "diététique", "DIETETIQUE", "Diététique"])
def test_expand_filter_is_accent_and_case_insensitive(client, text):
    expansion = client.get(
        f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/sos-category&filter={text}&includeDesignations=true"
    ).get_json()
    assert "dietetique-nutrition" in codes(expansion)
    for entry in expansion["expansion"]["contains"]:
        texts = [entry["code"], entry["display"]] + [d["value"] for d in entry.get("designation", [])]
        assert any("diet" in fold(t) for t in texts)


def test_expand_filters_english_designations_paging_and_language(client):
    url = f"{BASE}/ValueSet/sos-category"
    english = client.get(f"/fhir/ValueSet/$expand?url={url}&filter=pain").get_json()
    assert "douleur" in codes(english)
    full = client.get(f"/fhir/ValueSet/$expand?url={url}").get_json()
    total = full["expansion"]["total"]
    assert total > 60
    page = client.get(f"/fhir/ValueSet/$expand?url={url}&count=5&offset=10").get_json()
    assert page["expansion"]["total"] == total and codes(page) == codes(full)[10:15]
    en = client.get(f"/fhir/ValueSet/$expand?url={url}&filter=eri&displayLanguage=en").get_json()
    assert en["expansion"]["contains"][0]["display"] != "Espace de rencontres et d'information"
    designations = client.get(f"/fhir/ValueSet/$expand?url={url}&count=1&includeDesignations=true").get_json()
    assert designations["expansion"]["contains"][0]["designation"][0]["language"] == "en"


def _expand_inline(client, op: str, hierarchical: bool = False) -> dict:  # type: ignore[no-untyped-def]
    """$expand of an inline ValueSet: the catalogue filtered by `concept <op> douleur`."""
    valueset = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [{"system": CAT, "filter": [{"property": "concept", "op": op, "value": "douleur"}]}]
        },
    }
    parameters = [{"name": "valueSet", "resource": valueset}]
    if hierarchical:
        parameters.append({"name": "hierarchical", "valueBoolean": True})
    res = client.post(
        "/fhir/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": parameters},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert res.status_code == 200, res.get_json()
    return res.get_json()


def test_expand_intensional_basket_and_hierarchy(client):
    basket = client.get(f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/sos-inca-basket").get_json()
    found = codes(basket)
    assert "douleur" in found and "douleur-analgesie-intrathecale" in found
    assert "soins-palliatifs" not in found and "eri" not in found
    nested = _expand_inline(client, "is-a", hierarchical=True)
    contains = nested["expansion"]["contains"]
    assert [c["code"] for c in contains] == ["douleur"]
    assert {c["code"] for c in contains[0]["contains"]} >= {
        "douleur-hypnoanalgesie",
        "douleur-neurostimulation",
    }
    descendants = _expand_inline(client, "descendent-of")
    assert "douleur" not in codes(descendants) and "douleur-hypnoanalgesie" in codes(descendants)
    assert client.get("/fhir/ValueSet/$expand?url=http://unknown").status_code == 404


def test_translate_both_directions(client):
    url = f"{BASE}/ConceptMap/sos-category-to-ror-r211"
    forward = client.get(f"/fhir/ConceptMap/$translate?url={url}&system={CAT}&code=douleur").get_json()
    matches = [p for p in forward["parameter"] if p["name"] == "match"]
    assert params(forward)["result"] is True
    assert any(part.get("valueCoding", {}).get("code") == "004" for m in matches for part in m["part"])
    back = client.get(f"/fhir/ConceptMap/$translate?url={url}&system={R211}&code=004&reverse=true").get_json()
    back_codes = {
        part["valueCoding"]["code"]
        for m in back["parameter"]
        if m["name"] == "match"
        for part in m["part"]
        if "valueCoding" in part
    }
    assert "douleur" in back_codes
    none = client.get(f"/fhir/ConceptMap/$translate?url={url}&system={CAT}&code=bien-etre-hypnose").get_json()
    assert params(none)["result"] is False


def test_search_below_and_in_use_the_terminology(client):
    def post(res):  # type: ignore[no-untyped-def]
        return client.post(
            "/fhir/HealthcareService", json=res, headers={"Content-Type": "application/fhir+json"}
        )

    post(
        {
            "resourceType": "HealthcareService",
            "name": "A",
            "specialty": [{"coding": [{"system": CAT, "code": "douleur-hypnoanalgesie"}]}],
        }
    )
    post(
        {
            "resourceType": "HealthcareService",
            "name": "B",
            "specialty": [{"coding": [{"system": CAT, "code": "soins-palliatifs"}]}],
        }
    )
    post(
        {
            "resourceType": "HealthcareService",
            "name": "C",
            "specialty": [{"coding": [{"system": CAT, "code": "activite-physique-adaptee"}]}],
        }
    )

    def names(query: str) -> list[str]:
        res = client.get(f"/fhir/HealthcareService?{query}")
        assert res.status_code == 200, res.get_json()
        return sorted(e["resource"]["name"] for e in res.get_json().get("entry", []))

    assert names(f"specialty:below={CAT}|douleur") == ["A"]
    assert names(f"specialty:above={CAT}|douleur-hypnoanalgesie") == ["A"]
    assert names(f"specialty:in={BASE}/ValueSet/sos-inca-basket") == ["A", "C"]
    assert names(f"specialty:not-in={BASE}/ValueSet/sos-inca-basket") == ["B"]
    assert client.get("/fhir/HealthcareService?specialty:in=http://unknown/vs").status_code == 400
    assert client.get("/fhir/HealthcareService?specialty:below=http://unknown|x").status_code == 400
