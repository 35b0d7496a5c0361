"""The statistical shape of an SOS directory, calibrated on Brittany.

The thesis (seed 004, l. ~3225) estimates 389 structures for Brittany and lists their kinds
(l. ~2558, ~3000): authorised and associated cancer hospitals, associations, MSP and health
poles, CPTS, respondents of the ARS call "parcours de soins global après cancer", palliative
teams; it gives no breakdown by kind, so `TYPES[...].brittany` is an estimate that sums to 389.
Everything the demo builder and the generator draw comes from here, so the generated
directories keep the demo region's shape; seed/README.md documents these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

BRITTANY_DEPARTEMENTS = ("22", "29", "35", "56")
BRITTANY_STRUCTURES = 389

HOSPITAL = "hospital"
HAD = "had"
TOWN = "town"
COORDINATION = "coordination"
PALLIATIVE = "palliative"


@dataclass(frozen=True)
class TypeShape:
    """How one kind of structure looks: where it settles, what it offers, how it is described."""

    code: str  # sos-structure-type code
    family: str  # which axis profile applies (FAMILY_AXES)
    brittany: int  # structures of this kind in the demo region
    population_exponent: float  # commune weight = population ** exponent (1+: towns, <1: rural)
    categories: dict[str, float]  # probability of offering each SOS category
    children: tuple[int, int]  # specific SOS per offered category (min, max)
    champ: str  # ROR TRE_R227 champ d'activité
    care_mode: str  # default ROR TRE_R213 mode de prise en charge
    offer_type: str | None  # ROR TRE_R244 type d'offre (HealthcareService.category)
    second_site: float = 0.0  # probability of a second Location
    identifier: str = "siret"  # "finess" for health establishments


_HOSPITAL_CATS = {
    "douleur": 0.95, "dietetique-nutrition": 0.95, "psychologique": 0.95,
    "social-familial-professionnel": 0.95, "activite-physique-adaptee": 0.6, "hygiene-de-vie": 0.6,
    "soutien-proches-aidants": 0.6, "preservation-fertilite": 0.5, "troubles-sexualite": 0.4,
    "soins-palliatifs": 0.9, "bien-etre-image-de-soi": 0.6, "reeducation-effets-secondaires": 0.7,
    "eri": 0.2,
}  # fmt: skip
_ASSOCIATED_CATS = {
    "douleur": 0.8, "dietetique-nutrition": 0.85, "psychologique": 0.8,
    "social-familial-professionnel": 0.85, "activite-physique-adaptee": 0.35, "hygiene-de-vie": 0.4,
    "soutien-proches-aidants": 0.35, "preservation-fertilite": 0.05, "troubles-sexualite": 0.15,
    "soins-palliatifs": 0.8, "bien-etre-image-de-soi": 0.35, "reeducation-effets-secondaires": 0.5,
}  # fmt: skip
_SMR_CATS = {
    "douleur": 0.5, "dietetique-nutrition": 0.9, "psychologique": 0.7,
    "social-familial-professionnel": 0.8, "activite-physique-adaptee": 0.8, "hygiene-de-vie": 0.4,
    "soutien-proches-aidants": 0.3, "troubles-sexualite": 0.05, "soins-palliatifs": 0.4,
    "bien-etre-image-de-soi": 0.3, "reeducation-effets-secondaires": 0.95,
}  # fmt: skip
_HAD_CATS = {
    "soins-palliatifs": 1.0, "douleur": 0.8, "dietetique-nutrition": 0.5, "psychologique": 0.6,
    "social-familial-professionnel": 0.7, "soutien-proches-aidants": 0.4,
    "reeducation-effets-secondaires": 0.2,
}  # fmt: skip
_ASSOCIATION_CATS = {
    "psychologique": 0.35, "soutien-proches-aidants": 0.3, "bien-etre-image-de-soi": 0.55,
    "activite-physique-adaptee": 0.35, "social-familial-professionnel": 0.25,
    "dietetique-nutrition": 0.15, "soins-palliatifs": 0.08, "eri": 0.05,
}  # fmt: skip
_PRIMARY_CARE_CATS = {
    "dietetique-nutrition": 0.5, "psychologique": 0.4, "activite-physique-adaptee": 0.3,
    "hygiene-de-vie": 0.5, "douleur": 0.3, "social-familial-professionnel": 0.3,
    "reeducation-effets-secondaires": 0.4, "troubles-sexualite": 0.05, "soins-palliatifs": 0.2,
}  # fmt: skip
_CPTS_CATS = {
    "hygiene-de-vie": 0.4, "activite-physique-adaptee": 0.4, "dietetique-nutrition": 0.3,
    "psychologique": 0.3, "social-familial-professionnel": 0.3, "soins-palliatifs": 0.2,
}  # fmt: skip
# The "parcours de soins global après cancer" basket: APA, dietetic and psychological
# assessments and follow-up (seed 004 l. ~1654, seed 000 "Dispositif Après-Cancer").
_AAP_CATS = {"activite-physique-adaptee": 1.0, "dietetique-nutrition": 1.0, "psychologique": 1.0}
_SPORT_CATS = {"activite-physique-adaptee": 1.0, "hygiene-de-vie": 0.5, "dietetique-nutrition": 0.2}
_DAC_CATS = {"social-familial-professionnel": 1.0, "soins-palliatifs": 0.5, "soutien-proches-aidants": 0.3}
_EMSPT_CATS = {"soins-palliatifs": 1.0, "douleur": 0.5, "soutien-proches-aidants": 0.4}
_EMERGENCY_CATS = {"soins-palliatifs": 1.0, "douleur": 0.6}

TYPES: dict[str, TypeShape] = {
    t.code: t
    for t in (
        TypeShape("etablissement-sante-autorise", HOSPITAL, 40, 2.0, _HOSPITAL_CATS, (2, 4), "01", "32", "317", 0.25, "finess"),
        TypeShape("etablissement-sante-associe", HOSPITAL, 30, 1.3, _ASSOCIATED_CATS, (1, 3), "01", "32", "317", 0.0, "finess"),
        TypeShape("etablissement-smr", HOSPITAL, 12, 1.0, _SMR_CATS, (1, 3), "02", "32", "111", 0.0, "finess"),
        TypeShape("had", HAD, 12, 1.5, _HAD_CATS, (1, 2), "01", "31", "128", 0.0, "finess"),
        TypeShape("association", TOWN, 110, 0.9, _ASSOCIATION_CATS, (1, 3), "05", "54", None),
        TypeShape("msp", TOWN, 80, 0.3, _PRIMARY_CARE_CATS, (1, 2), "05", "32", "99", 0.0, "finess"),
        TypeShape("pole-sante", TOWN, 10, 0.4, _PRIMARY_CARE_CATS, (1, 2), "05", "32", None),
        TypeShape("centre-de-sante", TOWN, 20, 1.3, _PRIMARY_CARE_CATS, (1, 2), "05", "32", None, 0.0, "finess"),
        TypeShape("cpts", TOWN, 25, 0.6, _CPTS_CATS, (1, 2), "05", "58", "255"),
        TypeShape("structure-aap-parcours-apres-cancer", TOWN, 15, 0.8, _AAP_CATS, (1, 2), "05", "32", None),
        TypeShape("maison-sport-sante", TOWN, 12, 0.9, _SPORT_CATS, (1, 2), "05", "54", "137"),
        TypeShape("dac", COORDINATION, 11, 1.5, _DAC_CATS, (1, 2), "05", "58", "178"),
        TypeShape("emspt", PALLIATIVE, 8, 1.5, _EMSPT_CATS, (1, 2), "01", "11", "70"),
        TypeShape("equipe-urgence-palliative", PALLIATIVE, 4, 1.5, _EMERGENCY_CATS, (1, 2), "01", "59", "70"),
    )
}  # fmt: skip

# ROR TRE_R211 activité opérationnelle per SOS category (one per HealthcareService: the ROR's
# operationalActivity slice is 1..1), overridden by the first specific SOS listed in ACTIVITY_BY_CHILD.
ACTIVITY_BY_CATEGORY = {
    "douleur": "004", "dietetique-nutrition": "040", "psychologique": "289",
    "social-familial-professionnel": "317", "activite-physique-adaptee": "330", "hygiene-de-vie": "334",
    "soutien-proches-aidants": "325", "preservation-fertilite": "080", "troubles-sexualite": "135",
    "soins-palliatifs": "170", "bien-etre-image-de-soi": "314", "reeducation-effets-secondaires": "523",
    "eri": "414",
}  # fmt: skip
ACTIVITY_BY_CHILD = {
    "hygiene-de-vie-sevrage-tabagique": "139", "hygiene-de-vie-education-therapeutique": "336",
    "sp-lisp": "076", "socio-esthetique": "315", "reeducation-kinesitherapie": "339",
    "reeducation-orthophonie": "200", "reeducation-lymphoedeme": "532",
}  # fmt: skip
# ROR TRE_R213 mode de prise en charge implied by a specific SOS (else the type's default).
CARE_MODE_BY_CHILD = {
    "sp-usp": "28", "sp-lisp": "28", "sp-hopital-de-jour": "29", "sp-had": "31", "sp-emspt": "11",
    "sp-emasp": "52", "sp-equipe-urgence-palliative": "59", "douleur-equipe-mobile": "52",
    "dietetique-atelier-collectif": "42", "psychologique-groupe-de-parole": "42",
    "aidants-groupe-de-parole": "42", "eri-accueil-ecoute-information": "16",
    "eri-orientation": "16", "eri-rencontres-echanges": "16",
}  # fmt: skip
OFFER_TYPE_BY_CHILD = {"sp-usp": "175", "eri-accueil-ecoute-information": "72", "eri-orientation": "72"}

_HOSPITALS = {"etablissement-sante-autorise", "etablissement-sante-associe", "etablissement-smr"}
_ACUTE = {"etablissement-sante-autorise", "etablissement-sante-associe"}
# Specific SOS only some kinds of structure deliver (all others may offer any child).
CHILD_RESTRICTIONS: dict[str, set[str]] = {
    "douleur-analgesie-intrathecale": {"etablissement-sante-autorise"},
    "douleur-techniques-interventionnelles": {"etablissement-sante-autorise"},
    "douleur-neurostimulation": _HOSPITALS,
    "douleur-equipe-mobile": _ACUTE,
    "psychologique-psycho-oncologie-psychiatrie": _HOSPITALS | {"centre-de-sante"},
    "fertilite-consultation-oncofertilite": {"etablissement-sante-autorise"},
    "sp-hopital-de-jour": _ACUTE,
    "sp-emasp": _ACUTE,
    "sp-usp": _HOSPITALS,
    "sp-lisp": _HOSPITALS,
    "sp-had": {"had"},
    "sp-emspt": {"emspt"},
    "sp-equipe-urgence-palliative": {"equipe-urgence-palliative"},
    "sp-consultation": _HOSPITALS | {"had", "msp", "centre-de-sante", "pole-sante"},
    "sp-accompagnement-benevole": {"association", "emspt", "dac", "cpts"},
    "effets-soins-bucco-dentaires": _HOSPITALS | {"centre-de-sante"},
    "dietetique-bilan-apres-cancer": {"structure-aap-parcours-apres-cancer", "msp", "centre-de-sante"},
    "psychologique-bilan-apres-cancer": {"structure-aap-parcours-apres-cancer", "msp", "centre-de-sante"},
    "eri-accueil-ecoute-information": {"etablissement-sante-autorise", "association"},
    "eri-orientation": {"etablissement-sante-autorise", "association"},
    "eri-rencontres-echanges": {"etablissement-sante-autorise", "association"},
}
# Specific SOS a kind of structure always lists first when it offers the category.
PREFERRED_CHILDREN: dict[str, dict[str, list[str]]] = {
    "structure-aap-parcours-apres-cancer": {
        "activite-physique-adaptee": ["apa-bilan-fonctionnel-motivationnel"],
        "dietetique-nutrition": ["dietetique-bilan-apres-cancer"],
        "psychologique": ["psychologique-bilan-apres-cancer"],
    },
    "had": {"soins-palliatifs": ["sp-had"]},
    "emspt": {"soins-palliatifs": ["sp-emspt"]},
    "equipe-urgence-palliative": {"soins-palliatifs": ["sp-equipe-urgence-palliative"]},
    "maison-sport-sante": {"activite-physique-adaptee": ["apa-seances"]},
    "dac": {"social-familial-professionnel": ["social-aide-domicile"]},
}


@dataclass(frozen=True)
class FamilyAxes:
    """Probability of each axis value for the services of a family of structures."""

    audiences: dict[str, float]
    age_groups: dict[str, float]
    care_places: dict[str, float]
    phases: dict[str, float]
    access_modes: dict[str, float]
    doctor_share: float  # referent persons who are physicians


FAMILY_AXES: dict[str, FamilyAxes] = {
    HOSPITAL: FamilyAxes(
        {"patient": 1.0, "proche": 0.45, "aidant": 0.35, "professionnel": 0.15},
        {"adulte": 1.0, "personne-agee": 0.6, "aja": 0.3},
        {"etablissement-sante": 1.0, "domicile": 0.1},
        {"avant-traitement": 0.5, "pendant-traitement": 0.95, "apres-traitement": 0.7},
        {
            "patients-suivis-etablissement": 1.0,
            "patients-non-suivis-etablissement": 0.45,
            "patients-had": 0.15,
        },
        0.5,
    ),
    HAD: FamilyAxes(
        {"patient": 1.0, "proche": 0.6, "aidant": 0.6, "professionnel": 0.2},
        {"adulte": 1.0, "personne-agee": 0.9, "aja": 0.1},
        {"had": 1.0, "domicile": 1.0, "ehpad": 0.5},
        {"pendant-traitement": 0.9, "apres-traitement": 0.2},
        {"patients-had": 1.0},
        0.5,
    ),
    TOWN: FamilyAxes(
        {"patient": 1.0, "proche": 0.5, "aidant": 0.45, "professionnel": 0.05},
        {"adulte": 1.0, "personne-agee": 0.5, "aja": 0.15},
        {"ville": 1.0, "domicile": 0.2},
        {"avant-traitement": 0.15, "pendant-traitement": 0.75, "apres-traitement": 0.9},
        {},
        0.15,
    ),
    COORDINATION: FamilyAxes(
        {"patient": 1.0, "proche": 0.6, "aidant": 0.8, "professionnel": 1.0},
        {"adulte": 1.0, "personne-agee": 0.9, "aja": 0.2},
        {"domicile": 1.0, "ville": 1.0},
        {"avant-traitement": 0.3, "pendant-traitement": 0.8, "apres-traitement": 0.8},
        {"patients-non-suivis-etablissement": 0.5},
        0.3,
    ),
    PALLIATIVE: FamilyAxes(
        {"patient": 1.0, "proche": 1.0, "aidant": 0.9, "professionnel": 0.9},
        {"adulte": 1.0, "personne-agee": 1.0, "aja": 0.1},
        {"domicile": 1.0, "ehpad": 0.9, "etablissement-sante": 0.3},
        {},
        {},
        0.6,
    ),
}

# Share of structures in each lifecycle state (sos-entry-status): most entries are published;
# the others show the workflow (seed 004 l. ~2597, ~3120) at work.
LIFECYCLE = {
    "published": 0.80,
    "verification-pending": 0.06,
    "territorial-validated": 0.04,
    "submitted": 0.04,
    "draft": 0.03,
    "delisted": 0.03,
    "rejected": 0.01,
    "withdrawn": 0.01,
}
# Share of services that also take teleconsultations / home visits (ROR TRE_R338).
TELECONSULTATION = 0.15
