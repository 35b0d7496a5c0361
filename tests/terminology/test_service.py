"""The terminology service under the operations: closure table, SQL expanders for the search
engine, the expansion cache, national value sets, and moving content to another canonical base."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from fhirsrv.errors import BadRequest
from fhirsrv.storage import repository
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.schema import code_closure
from fhirsrv.terminology import closure, expander, store, valueset
from fhirsrv.terminology.rebase import rebase

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
NOS = "https://mos.esante.gouv.fr/NOS/"


def concept(cs: dict[str, Any], code: str) -> dict[str, Any]:
    stack = list(cs["concept"])
    while stack:
        item = stack.pop()
        if item["code"] == code:
            return item
        stack += item.get("concept", [])
    raise KeyError(code)


def test_closure_has_reflexive_rows_and_below_above_follow_the_hierarchy(services):
    with read_transaction(services.engine) as conn:
        below = {code for _, code in conn.execute(expander.below(CAT, "douleur"))}
        above = {code for _, code in conn.execute(expander.above(CAT, "douleur-hypnoanalgesie"))}
        leaf = {code for _, code in conn.execute(expander.below(CAT, "douleur-hypnoanalgesie"))}
    assert {"douleur", "douleur-hypnoanalgesie", "douleur-analgesie-intrathecale"} <= below
    assert not any(code.startswith("sp-") for code in below)
    assert above == {"douleur", "douleur-hypnoanalgesie"}
    assert leaf == {"douleur-hypnoanalgesie"}


def test_rebuild_all_restores_the_table_from_stored_code_systems(services):
    with write_transaction(services.engine) as conn:
        conn.execute(delete(code_closure))
        indexed = closure.rebuild_all(conn)
        rows = conn.execute(select(func.count()).select_from(code_closure)).scalar_one()
        below = {code for _, code in conn.execute(expander.below(CAT, "soins-palliatifs"))}
    assert indexed >= 12  # the nine SOS code systems and the three NOS extracts
    assert rows > 78
    assert "sp-lisp" in below


def test_in_valueset_select_gives_the_inca_basket(services):
    with read_transaction(services.engine) as conn:
        pairs = set(conn.execute(expander.in_valueset(conn, f"{BASE}/ValueSet/sos-inca-basket")).all())
        with pytest.raises(BadRequest):
            expander.in_valueset(conn, "http://unknown/ValueSet/x")
    assert (CAT, "douleur-analgesie-intrathecale") in pairs
    assert (CAT, "activite-physique-adaptee") in pairs
    assert (CAT, "soins-palliatifs") not in pairs and (CAT, "eri") not in pairs


def test_cache_never_serves_a_stale_expansion_after_a_code_system_changes(services):
    url = f"{BASE}/ValueSet/sos-category"
    with read_transaction(services.engine) as conn:
        before = {c.code for c in valueset.codes(conn, store.require(conn, "ValueSet", url))}
    assert "douleur-nouveau-soin" not in before
    with write_transaction(services.engine) as conn:
        current = repository.get_current(conn, "CodeSystem", "sos-category")
        cs = json.loads(current.content)
        concept(cs, "douleur")["concept"].append({"code": "douleur-nouveau-soin", "display": "Nouveau soin"})
        repository.replace(conn, current, cs, "update")
        closure.rebuild_closure(conn, cs)
    with read_transaction(services.engine) as conn:
        after = {c.code for c in valueset.codes(conn, store.require(conn, "ValueSet", url))}
        below = {code for _, code in conn.execute(expander.below(CAT, "douleur"))}
    assert "douleur-nouveau-soin" in after and "douleur-nouveau-soin" in below


def test_national_value_set_expands_from_its_listed_codes(services):
    with read_transaction(services.engine) as conn:
        j226 = store.require(
            conn, "ValueSet", f"{NOS}JDV_J226-ModaliteAccueil-ROR/FHIR/JDV-J226-ModaliteAccueil-ROR"
        )
        expanded = valueset.expand(conn, j226, text_filter="domicile")
    found = {(c["code"], c["display"]) for c in expanded["expansion"]["contains"]}
    assert found == {("05", "Visite à domicile"), ("27", "Soins à domicile")}


def test_basket_and_inactive_concepts_as_the_sources_say(services):
    with read_transaction(services.engine) as conn:
        cs = store.require(conn, "CodeSystem", CAT)
        structures = store.require(conn, "ValueSet", f"{BASE}/ValueSet/sos-structure-type")
        active = valueset.expand(conn, structures, active_only=True)
        everything = valueset.expand(conn, structures)

    def basket(code: str) -> list[str]:
        return [p["valueCode"] for p in concept(cs, code).get("property", []) if p["code"] == "basket"]

    assert basket("soins-palliatifs") == ["other-inca"]  # named by the INCa, outside the basket
    assert basket("eri") == [] and basket("aidants-repit") == []  # not named by the INCa
    assert basket("douleur-hypnoanalgesie") == ["special-technique"]
    assert basket("sophrologie") == ["psnc"]
    assert everything["expansion"]["total"] == active["expansion"]["total"] + 1
    assert "professionnel-liberal" not in {c["code"] for c in active["expansion"]["contains"]}


def test_rebase_moves_own_canonicals_and_leaves_national_ones():
    cm = {
        "resourceType": "ConceptMap",
        "url": f"{BASE}/ConceptMap/x",
        "sourceCanonical": f"{BASE}/ValueSet/sos-category|1.0.0",
        "group": [{"source": CAT, "target": f"{NOS}TRE_R211", "element": [{"code": "douleur"}]}],
        "description": "https://sos.example.org/fhirlike is not a canonical of ours",
    }
    moved = rebase(cm, "https://annuaire.example.fr/fhir/")
    assert moved["url"] == "https://annuaire.example.fr/fhir/ConceptMap/x"
    assert moved["sourceCanonical"] == "https://annuaire.example.fr/fhir/ValueSet/sos-category|1.0.0"
    assert moved["group"][0]["source"] == "https://annuaire.example.fr/fhir/CodeSystem/sos-category"
    assert moved["group"][0]["target"] == f"{NOS}TRE_R211"
    assert moved["description"] == cm["description"]
    assert cm["url"] == f"{BASE}/ConceptMap/x"  # the input is left as it was
