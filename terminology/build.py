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

from mappings import AXIS_MAPS, CATEGORY_TO_R211

HERE = Path(__file__).resolve().parent
DRAFT = HERE.parent.parent / "shared" / "domain" / "catalogue-draft.json"
BASE = "https://sos.example.org/fhir"
VERSION = "1.0.0"
DATE = "2026-11-22"
PUBLISHER = "Annuaire régional des soins oncologiques de support"
BASKET = {
    "socle": "core",
    "complementaire": "complementary",
    "technique-particuliere": "special-technique",
    "hors-panier": "other-inca",
    "psnc": "psnc",
}
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
    (
        "territorial-validated",
        "Validée (niveau territorial)",
        "Territorially validated",
        "Validée par le niveau territorial, en attente de la validation régionale (DSRC).",
    ),
    ("published", "Publiée", "Published", "Validée par le DSRC et publiée dans l'annuaire."),
    (
        "verification-pending",
        "Vérification annuelle en attente",
        "Yearly verification pending",
        "Rappel annuel envoyé ; sans vérification sous deux mois, l'entrée est retirée.",
    ),
    ("delisted", "Retirée", "Delisted", "Retirée de l'annuaire ; reste lisible avec son historique."),
    (
        "rejected",
        "Refusée",
        "Rejected",
        "Refusée par le niveau territorial ou régional, avec un motif ; la structure la corrige puis la soumet de nouveau.",
    ),
    (
        "withdrawn",
        "Retirée par la structure",
        "Withdrawn",
        "Retirée par la structure elle-même ; reste lisible avec son historique.",
    ),
]
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


def _header(kind: str, cid: str, name: str, title: str, description: str) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": cid,
        "url": f"{BASE}/{kind}/{cid}",
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "date": DATE,
        "publisher": PUBLISHER,
        "description": description,
        "language": "fr",
    }


def _concept(item: dict[str, Any], properties: list[dict[str, Any]]) -> dict[str, Any]:
    concept: dict[str, Any] = {"code": item["code"], "display": item["display"]}
    if item.get("definition"):
        concept["definition"] = item["definition"]
    if item.get("designation_en"):
        concept["designation"] = [{"language": "en", "value": item["designation_en"]}]
    props = [{"code": "status", "valueCode": "active"}]
    if item.get("active") is False:  # listed for later (e.g. individual practitioners), not offered yet
        props.append({"code": "inactive", "valueBoolean": True})
    if item.get("evidence"):
        props.append({"code": "evidence", "valueCode": item["evidence"]})
    concept["property"] = props + properties
    return concept


def _codesystem(
    cid: str,
    name: str,
    title: str,
    description: str,
    concepts: list[dict[str, Any]],
    hierarchical: bool = False,
    extra_props: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    cs = _header("CodeSystem", cid, name, title, description)
    cs.update({"caseSensitive": True, "valueSet": f"{BASE}/ValueSet/{cid}", "content": "complete"})
    if hierarchical:
        cs["hierarchyMeaning"] = "is-a"
    cs["count"] = sum(1 + len(c.get("concept", [])) for c in concepts)
    cs["property"] = [
        {
            "code": "status",
            "uri": "http://hl7.org/fhir/concept-properties#status",
            "type": "code",
            "description": "Statut du concept (active)",
        },
        {
            "code": "evidence",
            "type": "code",
            "description": "Source du concept : seed (texte source), externe (source publique), proposition (à valider)",
        },
        {
            "code": "inactive",
            "uri": "http://hl7.org/fhir/concept-properties#inactive",
            "type": "boolean",
            "description": "Concept réservé, pas encore proposé à la saisie",
        },
        *(extra_props or []),
    ]
    cs["concept"] = concepts
    return cs


def _basket(item: dict[str, Any], category: dict[str, Any]) -> list[dict[str, Any]]:
    """The `basket` property. "hors-panier" becomes other-inca only where the INCa identifies the
    care (soins palliatifs, image de soi, effets indésirables: seed 004 l. 236-238); the ERI and
    caregivers' respite are outside the basket and not named by the INCa, so they carry none."""
    basket = item.get("panierInca", category["panierInca"])
    if basket == "hors-panier" and not category.get("incaIdentifie"):
        return []
    return [{"code": "basket", "valueCode": BASKET[basket]}]


def _valueset(cid: str, name: str, title: str, system: str) -> dict[str, Any]:
    vs = _header("ValueSet", cid, name, title, f"Tous les codes de {title}.")
    vs["compose"] = {"include": [{"system": system}]}
    return vs


def build(draft: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    catalogue = draft["axes"]["soin-de-support"]["concepts"]
    basket_prop = {
        "code": "basket",
        "type": "code",
        "description": "Panier INCa : core, complementary, special-technique, other-inca, psnc",
    }
    hier_props = [
        basket_prop,
        {
            "code": "parent",
            "uri": "http://hl7.org/fhir/concept-properties#parent",
            "type": "code",
            "description": "Catégorie parente",
        },
        {
            "code": "child",
            "uri": "http://hl7.org/fhir/concept-properties#child",
            "type": "code",
            "description": "Soins de la catégorie",
        },
    ]
    concepts = []
    for cat in catalogue:
        children = cat.get("children", [])
        node = _concept(
            cat, _basket(cat, cat) + [{"code": "child", "valueCode": c["code"]} for c in children]
        )
        node["concept"] = [
            _concept(c, _basket(c, cat) + [{"code": "parent", "valueCode": cat["code"]}]) for c in children
        ]
        concepts.append(node)
    out.append(
        _codesystem(
            "sos-category",
            "SOSCategory",
            "Catalogue des soins oncologiques de support",
            "Les 13 catégories de soins oncologiques de support (9 du panier INCa, soins palliatifs, bien-être et "
            "image de soi, rééducation et effets secondaires, ERI) et les soins précis de chacune.",
            concepts,
            hierarchical=True,
            extra_props=hier_props,
        )
    )
    out.append(
        _valueset(
            "sos-category",
            "SOSCategoryVS",
            "Catalogue des soins oncologiques de support",
            f"{BASE}/CodeSystem/sos-category",
        )
    )
    basket = _header(
        "ValueSet",
        "sos-inca-basket",
        "SOSIncaBasket",
        "Panier INCa des soins oncologiques de support",
        "Les soins du panier INCa : socle, complémentaires et techniques particulières d'analgésie.",
    )
    basket["compose"] = {
        "include": [
            {
                "system": f"{BASE}/CodeSystem/sos-category",
                "filter": [
                    {"property": "basket", "op": "in", "value": "core,complementary,special-technique"}
                ],
            }
        ]
    }
    out.append(basket)
    for axis, (cid, name, english) in AXES.items():
        spec = draft["axes"][axis]
        items = [_concept(v, []) for v in spec["values"]]
        out.append(_codesystem(cid, name, spec["display"], f"{spec['display']} ({english}).", items))
        out.append(_valueset(cid, f"{name}VS", spec["display"], f"{BASE}/CodeSystem/{cid}"))
    status = [
        _concept({"code": c, "display": d, "designation_en": e, "definition": f}, [])
        for c, d, e, f in ENTRY_STATUS
    ]
    out.append(
        _codesystem(
            "sos-entry-status",
            "SOSEntryStatus",
            "Statut d'une entrée de l'annuaire",
            "Cycle de vie d'une entrée : saisie, validations territoriale et régionale, publication, "
            "vérification annuelle, retrait.",
            status,
        )
    )
    out.append(
        _valueset(
            "sos-entry-status",
            "SOSEntryStatusVS",
            "Statut d'une entrée de l'annuaire",
            f"{BASE}/CodeSystem/sos-entry-status",
        )
    )
    out.append(_concept_map(catalogue))
    out.extend(_axis_maps(draft))
    return out


def _r211_displays() -> dict[str, str]:
    """code -> display of the TRE_R211 fragment shipped in ror/ (built first by main())."""
    fragment = json.loads(
        (HERE / "ror" / "CodeSystem-TRE-R211-ActiviteOperationnelle.json").read_text("utf-8")
    )
    return {c["code"]: c["display"] for c in fragment["concept"]}


COMMENTS = {  # R4 invariant cmd-1: a narrower or inexact target SHALL carry a comment
    "narrower": "Le code national est plus restreint que le concept SOS : il n'en couvre qu'une partie.",
    "inexact": "Recouvrement partiel : le code national et le concept SOS se chevauchent sans s'inclure.",
}


def _target(code: str, display: str, equivalence: str) -> dict[str, Any]:
    target = {"code": code, "display": display, "equivalence": equivalence}
    if equivalence in COMMENTS:
        target["comment"] = COMMENTS[equivalence]
    return target


def _unmatched(comment: str) -> list[dict[str, Any]]:
    return [{"equivalence": "unmatched", "comment": comment}]


def _concept_map(catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """SOS catalogue -> ROR operational activities (TRE_R211), from mappings.CATEGORY_TO_R211."""
    displays = _r211_displays()
    elements = []
    for cat in catalogue:
        for item in [cat, *cat.get("children", [])]:
            element: dict[str, Any] = {"code": item["code"], "display": item["display"]}
            targets = CATEGORY_TO_R211.get(item["code"], [])
            if targets:
                element["target"] = [
                    _target(code, displays[code], equivalence) for code, equivalence in targets
                ]
            else:
                element["target"] = _unmatched("Pas d'activité opérationnelle ROR correspondante")
            elements.append(element)
    cm = _header(
        "ConceptMap",
        "sos-category-to-ror-r211",
        "SOSCategoryToRORR211",
        "Catalogue SOS vers activités opérationnelles du ROR (TRE_R211)",
        "Pour qu'un consommateur du ROR lise les soins de l'annuaire avec les codes nationaux. Les "
        "équivalences sont à confirmer contre la version NOS en vigueur.",
    )
    cm["sourceCanonical"] = f"{BASE}/ValueSet/sos-category"
    cm["targetUri"] = (
        "https://mos.esante.gouv.fr/NOS/JDV_J17-ActiviteOperationnelle-ROR/FHIR/JDV-J17-ActiviteOperationnelle-ROR"
    )
    cm["group"] = [{"source": f"{BASE}/CodeSystem/sos-category", "target": R211, "element": elements}]
    return cm


def _axis_maps(draft: dict[str, Any]) -> list[dict[str, Any]]:
    """Axis -> national codes where the ROR has one (place of care, age group, structure type).
    One group per target system, as a ConceptMap group has a single target."""
    by_cid = {cid: axis for axis, (cid, _, _) in AXES.items()}
    out = []
    for map_id, cid, title, mapped, comments in AXIS_MAPS:
        values = draft["axes"][by_cid[cid]]["values"]
        groups: dict[str, list[dict[str, Any]]] = {}
        unmatched = []
        for value in values:
            targets = mapped.get(value["code"], [])
            for system, code, display, equivalence in targets:
                elements = groups.setdefault(system, [])
                element = next((e for e in elements if e["code"] == value["code"]), None)
                if element is None:
                    element = {"code": value["code"], "display": value["display"], "target": []}
                    elements.append(element)
                element["target"].append(_target(code, display, equivalence))
            if not targets:
                unmatched.append(
                    {
                        "code": value["code"],
                        "display": value["display"],
                        "target": _unmatched(
                            comments.get(value["code"], "Pas de code national correspondant")
                        ),
                    }
                )
        cm = _header("ConceptMap", map_id, "".join(w.title() for w in map_id.split("-")), title, title + ".")
        cm["sourceCanonical"] = f"{BASE}/ValueSet/{cid}"
        source = f"{BASE}/CodeSystem/{cid}"
        cm["group"] = [{"source": source, "target": system, "element": els} for system, els in groups.items()]
        if unmatched:
            first = cm["group"][0] if cm["group"] else {"source": source, "element": []}
            first["element"].extend(unmatched)
            if not cm["group"]:
                cm["group"].append(first)
        out.append(cm)
    return out


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
        if not code.isdigit():  # "536-542 Chirurgie oncologique {…}": a range, not one code
            continue
        concept = {"code": code, "display": display}
        if status != "active":
            concept["property"] = [{"code": "status", "valueCode": status}]
        concepts.append(concept)
    out.append(
        {
            "resourceType": "CodeSystem",
            "id": "TRE-R211-ActiviteOperationnelle",
            "url": R211,
            "name": "TRE_R211_ActiviteOperationnelle",
            "title": "TRE_R211 Activité opérationnelle (extrait SOS)",
            "status": "active",
            "content": "fragment",
            "caseSensitive": True,
            "description": "Extrait : les activités opérationnelles du ROR utiles aux soins oncologiques de support "
            "(source : nomenclature NOS TRE_R211 de l'ANS).",
            "property": [{"code": "status", "type": "code"}],
            "concept": concepts,
        }
    )
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
