"""Builds the SOS terminology (CodeSystems, ValueSets, ConceptMaps) from the catalogue draft.

    python terminology/build.py [path/to/catalogue-draft.json]

The draft (../shared/domain/catalogue-draft.json, version 0.1.0-draft) gathers every concept of
the SOS catalogue and of the search axes with its source; this script turns it into FHIR R4
content, deterministically (same input, same files), so the JSON committed here can always be
regenerated and reviewed as a diff. Canonical URLs use the default base; the server rewrites
them when FHIRSRV_CANONICAL_BASE differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRAFT = HERE.parent.parent / "shared" / "domain" / "catalogue-draft.json"
BASE = "https://sos.example.org/fhir"
VERSION = "1.0.0"
DATE = "2026-11-22"
PUBLISHER = "Annuaire régional des soins oncologiques de support"
BASKET = {"socle": "core", "complementaire": "complementary", "technique-particuliere": "special-technique",
          "hors-panier": "other-inca", "psnc": "psnc"}
AXES = {  # draft axis -> (CodeSystem id, name, English title)
    "public-concerne": ("sos-audience", "SOSAudience", "Audience"),
    "type-de-public": ("sos-age-group", "SOSAgeGroup", "Age group"),
    "lieu-prise-en-charge": ("sos-care-place", "SOSCarePlace", "Place of care"),
    "phase-prise-en-charge": ("sos-care-phase", "SOSCarePhase", "Care phase"),
    "modalite-acces": ("sos-access-mode", "SOSAccessMode", "Access mode"),
    "parcours-specifique": ("sos-pathway", "SOSPathway", "Specific pathway"),
    "type-structure": ("sos-structure-type", "SOSStructureType", "Structure type"),
}
ENTRY_STATUS = [
    ("draft", "Brouillon", "Draft", "Saisie en cours par le référent de la structure."),
    ("submitted", "Soumise", "Submitted", "Soumise à la validation territoriale (3C ou DAC)."),
    ("territorial-validated", "Validée (niveau territorial)", "Territorially validated",
     "Validée par le niveau territorial, en attente de la validation régionale (DSRC)."),
    ("published", "Publiée", "Published", "Validée par le DSRC et publiée dans l'annuaire."),
    ("verification-pending", "Vérification annuelle en attente", "Yearly verification pending",
     "Rappel annuel envoyé ; sans vérification sous deux mois, l'entrée est retirée."),
    ("delisted", "Retirée", "Delisted", "Retirée de l'annuaire ; reste lisible avec son historique."),
]
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


def _header(kind: str, cid: str, name: str, title: str, description: str) -> dict[str, Any]:
    return {
        "resourceType": kind, "id": cid, "url": f"{BASE}/{kind}/{cid}", "version": VERSION, "name": name,
        "title": title, "status": "active", "experimental": False, "date": DATE, "publisher": PUBLISHER,
        "description": description, "language": "fr",
    }


def _concept(item: dict[str, Any], properties: list[dict[str, Any]]) -> dict[str, Any]:
    concept: dict[str, Any] = {"code": item["code"], "display": item["display"]}
    if item.get("definition"):
        concept["definition"] = item["definition"]
    if item.get("designation_en"):
        concept["designation"] = [{"language": "en", "value": item["designation_en"]}]
    props = [{"code": "status", "valueCode": "active"}]
    if item.get("evidence"):
        props.append({"code": "evidence", "valueCode": item["evidence"]})
    concept["property"] = props + properties
    return concept


def _codesystem(cid: str, name: str, title: str, description: str, concepts: list[dict[str, Any]],
                hierarchical: bool = False, extra_props: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    cs = _header("CodeSystem", cid, name, title, description)
    cs.update({"caseSensitive": True, "valueSet": f"{BASE}/ValueSet/{cid}", "content": "complete"})
    if hierarchical:
        cs["hierarchyMeaning"] = "is-a"
    cs["count"] = sum(1 + len(c.get("concept", [])) for c in concepts)
    cs["property"] = [
        {"code": "status", "uri": "http://hl7.org/fhir/concept-properties#status", "type": "code",
         "description": "Statut du concept (active)"},
        {"code": "evidence", "type": "code",
         "description": "Source du concept : seed (texte source), externe (source publique), proposition (à valider)"},
        *(extra_props or []),
    ]
    cs["concept"] = concepts
    return cs


def _valueset(cid: str, name: str, title: str, system: str) -> dict[str, Any]:
    vs = _header("ValueSet", cid, name, title, f"Tous les codes de {title}.")
    vs["compose"] = {"include": [{"system": system}]}
    return vs


def build(draft: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    catalogue = draft["axes"]["soin-de-support"]["concepts"]
    basket_prop = {"code": "basket", "type": "code",
                   "description": "Panier INCa : core, complementary, special-technique, other-inca, psnc"}
    hier_props = [
        basket_prop,
        {"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code",
         "description": "Catégorie parente"},
        {"code": "child", "uri": "http://hl7.org/fhir/concept-properties#child", "type": "code",
         "description": "Soins de la catégorie"},
    ]
    concepts = []
    for cat in catalogue:
        children = cat.get("children", [])
        node = _concept(cat, [{"code": "basket", "valueCode": BASKET[cat["panierInca"]]}]
                        + [{"code": "child", "valueCode": c["code"]} for c in children])
        node["concept"] = [
            _concept(c, [{"code": "basket", "valueCode": BASKET[c.get("panierInca", cat["panierInca"])]},
                         {"code": "parent", "valueCode": cat["code"]}])
            for c in children
        ]
        concepts.append(node)
    out.append(_codesystem(
        "sos-category", "SOSCategory", "Catalogue des soins oncologiques de support",
        "Les 13 catégories de soins oncologiques de support (9 du panier INCa, soins palliatifs, bien-être et "
        "image de soi, rééducation et effets secondaires, ERI) et les soins précis de chacune.",
        concepts, hierarchical=True, extra_props=hier_props))
    out.append(_valueset("sos-category", "SOSCategoryVS", "Catalogue des soins oncologiques de support",
                         f"{BASE}/CodeSystem/sos-category"))
    basket = _header("ValueSet", "sos-inca-basket", "SOSIncaBasket", "Panier INCa des soins oncologiques de support",
                     "Les soins du panier INCa : socle, complémentaires et techniques particulières d'analgésie.")
    basket["compose"] = {"include": [{"system": f"{BASE}/CodeSystem/sos-category", "filter": [
        {"property": "basket", "op": "in", "value": "core,complementary,special-technique"}]}]}
    out.append(basket)
    for axis, (cid, name, english) in AXES.items():
        spec = draft["axes"][axis]
        items = [_concept(v, []) for v in spec["values"]]
        out.append(_codesystem(cid, name, spec["display"], f"{spec['display']} ({english}).", items))
        out.append(_valueset(cid, f"{name}VS", spec["display"], f"{BASE}/CodeSystem/{cid}"))
    status = [_concept({"code": c, "display": d, "designation_en": e, "definition": f}, [])
              for c, d, e, f in ENTRY_STATUS]
    out.append(_codesystem("sos-entry-status", "SOSEntryStatus", "Statut d'une entrée de l'annuaire",
                           "Cycle de vie d'une entrée : saisie, validations territoriale et régionale, publication, "
                           "vérification annuelle, retrait.", status))
    out.append(_valueset("sos-entry-status", "SOSEntryStatusVS", "Statut d'une entrée de l'annuaire",
                         f"{BASE}/CodeSystem/sos-entry-status"))
    out.append(_concept_map(catalogue))
    return out


def _concept_map(catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """SOS catalogue -> ROR operational activities (TRE_R211), from the draft's candidate hints.

    The ROR's activities are broader than the catalogue's specific services: a child maps to the
    activity that contains it (wider); a category to its activity (equivalent when the names
    match one to one, else wider); a concept with no national code is unmatched."""
    elements = []
    for cat in catalogue:
        for item in [cat, *cat.get("children", [])]:
            hints = [h for h in item.get("rorHint", []) if h.get("system") == R211]
            element: dict[str, Any] = {"code": item["code"], "display": item["display"]}
            if hints:
                element["target"] = [{"code": h["code"], "display": h.get("display", ""),
                                      "equivalence": "wider" if item is not cat else "relatedto",
                                      "comment": "Correspondance candidate, à vérifier contre la version NOS en vigueur"}
                                     for h in hints]
            else:
                element["target"] = [{"equivalence": "unmatched",
                                      "comment": "Pas de code ROR correspondant (ex. hypnose, sophrologie)"}]
            elements.append(element)
    cm = _header("ConceptMap", "sos-category-to-ror-r211", "SOSCategoryToRORR211",
                 "Catalogue SOS vers activités opérationnelles du ROR (TRE_R211)",
                 "Pour qu'un consommateur du ROR lise les soins de l'annuaire avec les codes nationaux.")
    cm["sourceCanonical"] = f"{BASE}/ValueSet/sos-category"
    cm["targetUri"] = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/" \
                      "JDV-J17-ActiviteOperationnelle-ROR"
    cm["group"] = [{"source": f"{BASE}/CodeSystem/sos-category", "target": R211, "element": elements}]
    return cm


def ror_extracts(folder: Path) -> list[dict[str, Any]]:
    """The national nomenclature extracts of ../shared/ror/terminology, as FHIR content.

    TRE_R211 is shipped as a fragment CodeSystem (only the activities relevant to SOS)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        res["id"] = res["id"][:64]
        note = res.pop("_note", None)  # the extract's provenance note: kept, in a FHIR element
        if note:
            res["description"] = f"{res.get('description', '')} {note}".strip()
        out.append(res)
    concepts = []
    for line in (folder / "R211_SOS_relevant_concepts.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("code\t") or not line.strip():
            continue
        code, display, status, *_ = line.split("\t")
        concept = {"code": code, "display": display}
        if status != "active":
            concept["property"] = [{"code": "status", "valueCode": status}]
        concepts.append(concept)
    out.append({
        "resourceType": "CodeSystem", "id": "TRE-R211-ActiviteOperationnelle", "url": R211,
        "name": "TRE_R211_ActiviteOperationnelle", "title": "TRE_R211 Activité opérationnelle (extrait SOS)",
        "status": "active", "content": "fragment", "caseSensitive": True,
        "description": "Extrait : les activités opérationnelles du ROR utiles aux soins oncologiques de support "
                       "(source : nomenclature NOS TRE_R211 de l'ANS).",
        "property": [{"code": "status", "type": "code"}],
        "concept": concepts,
    })
    return out


def main() -> None:
    draft_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DRAFT
    draft = json.loads(draft_path.read_text(encoding="utf-8"))
    ror_dir = HERE / "ror"
    ror_dir.mkdir(exist_ok=True)
    for res in ror_extracts(draft_path.parent.parent / "ror" / "terminology"):
        path = ror_dir / f"{res['resourceType']}-{res['id']}.json"
        path.write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(path.name)
    for res in build(draft):
        path = HERE / f"{res['resourceType']}-{res['id']}.json"
        path.write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(path.name)


if __name__ == "__main__":
    main()
