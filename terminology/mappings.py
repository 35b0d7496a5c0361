"""The SOS -> ROR/NOS correspondences, judged concept by concept (read by build.py).

Equivalence is the FHIR R4 ConceptMap one, read from the SOS concept towards the national code:
`equivalent` (same activity), `wider` (the national code covers more, e.g. pain medicine for every
patient vs pain care in a cancer pathway), `narrower` (the national code is more specific),
`inexact` (they overlap), `unmatched` (no national code: hypnose, sophrologie, art-thérapie...).
Every category is also `wider`-mapped to R211 414 "Soins de support en oncologie et hématologie",
the ROR's one supportive-care activity, so a ROR consumer finds the whole catalogue under it.
PSNC are not mapped to 414: the INCa does not recognise them as supportive care (seed 004 l. 250).
"""

from __future__ import annotations

R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R213 = "https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge"
R239 = "https://mos.esante.gouv.fr/NOS/TRE_R239-PublicPrisEnCharge/FHIR/TRE-R239-PublicPrisEnCharge"
R244 = "https://mos.esante.gouv.fr/NOS/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R338 = "https://mos.esante.gouv.fr/NOS/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"

SUPPORT = ("414", "wider")

# sos-category code -> [(R211 code, equivalence)]; codes absent here are unmatched.
CATEGORY_TO_R211: dict[str, list[tuple[str, str]]] = {
    "douleur": [("004", "wider"), SUPPORT],
    "douleur-consultation-douleur-chronique": [("004", "wider")],
    "douleur-equipe-mobile": [("004", "wider")],
    "douleur-analgesie-intrathecale": [("004", "wider")],
    "douleur-hypnoanalgesie": [("004", "wider")],
    "douleur-kinesitherapie": [("339", "wider")],
    "douleur-neurostimulation": [("004", "wider")],
    "douleur-entretien-psychologique": [("289", "wider")],
    "douleur-techniques-interventionnelles": [("004", "wider"), ("183", "inexact")],
    "dietetique-nutrition": [("040", "wider"), SUPPORT],
    "dietetique-consultation": [("040", "wider")],
    "dietetique-bilan-apres-cancer": [("040", "wider")],
    "dietetique-atelier-collectif": [("040", "wider")],
    "dietetique-prevention-denutrition": [("040", "wider")],
    "psychologique": [("289", "wider"), SUPPORT],
    "psychologique-entretien-individuel": [("289", "wider")],
    "psychologique-bilan-apres-cancer": [("289", "wider")],
    "psychologique-groupe-de-parole": [("289", "wider")],
    "psychologique-psychotherapie": [("289", "wider")],
    "psychologique-psycho-oncologie-psychiatrie": [("289", "inexact")],
    "social-familial-professionnel": [SUPPORT],
    "social-accompagnement-social": [SUPPORT],
    "social-acces-droits-aides-financieres": [("317", "inexact"), SUPPORT],
    "social-maintien-retour-emploi": [SUPPORT],
    "social-aide-domicile": [SUPPORT],
    "social-soutien-familial": [("325", "inexact")],
    "activite-physique-adaptee": [("330", "inexact"), SUPPORT],
    "apa-bilan-fonctionnel-motivationnel": [("330", "inexact")],
    "apa-seances": [("330", "inexact")],
    "apa-orientation-sport-sante": [("330", "inexact")],
    "hygiene-de-vie": [("334", "inexact"), SUPPORT],
    "hygiene-de-vie-sevrage-tabagique": [("139", "wider")],
    "hygiene-de-vie-alcool": [("450", "inexact")],
    "hygiene-de-vie-conseils": [("334", "inexact")],
    "hygiene-de-vie-education-therapeutique": [("336", "wider")],
    "soutien-proches-aidants": [("325", "inexact"), SUPPORT],
    "aidants-entretien-psychologique": [("289", "wider")],
    "aidants-groupe-de-parole": [("325", "inexact")],
    "aidants-accompagnement-deuil": [("325", "inexact")],
    "aidants-repit": [("325", "wider")],
    "preservation-fertilite": [("080", "inexact"), SUPPORT],
    "fertilite-information": [SUPPORT],
    "fertilite-consultation-oncofertilite": [("080", "wider")],
    "troubles-sexualite": [("135", "wider"), ("535", "wider"), SUPPORT],
    "sexualite-consultation-oncosexologie": [("135", "wider"), ("535", "wider")],
    "sexualite-accompagnement-couple": [SUPPORT],
    "soins-palliatifs": [("170", "equivalent"), SUPPORT],
    "sp-consultation": [("170", "wider")],
    "sp-hopital-de-jour": [("170", "wider")],
    "sp-equipe-urgence-palliative": [("170", "wider")],
    "sp-emspt": [("170", "wider")],
    "sp-emasp": [("170", "wider")],
    "sp-had": [("170", "wider")],
    "sp-usp": [("170", "wider")],
    "sp-lisp": [("076", "equivalent")],
    "sp-accompagnement-benevole": [("170", "wider")],
    "bien-etre-image-de-soi": [("314", "inexact"), SUPPORT],
    "socio-esthetique": [("315", "equivalent")],
    "reeducation-effets-secondaires": [("523", "inexact"), SUPPORT],
    "reeducation-kinesitherapie": [("339", "equivalent")],
    "reeducation-orthophonie": [("200", "equivalent")],
    "reeducation-ergotherapie": [SUPPORT],
    "reeducation-lymphoedeme": [("532", "equivalent")],
    "effets-soins-bucco-dentaires": [SUPPORT],
    "effets-gestion-effets-indesirables": [SUPPORT],
    "effets-fatigue-troubles-cognitifs": [("528", "inexact")],
    "eri": [SUPPORT],
    "eri-accueil-ecoute-information": [SUPPORT],
    "eri-orientation": [SUPPORT],
    "eri-rencontres-echanges": [SUPPORT],
}

# Axis maps: (ConceptMap id, source CodeSystem id, title, {code: [(system, code, display, equivalence)]},
# {code: comment for unmatched}). Displays are those of the extracts in ../shared/ror/terminology.
AXIS_MAPS = [
    (
        "sos-care-place-to-ror",
        "sos-care-place",
        "Lieu de prise en charge SOS vers modalité d'accueil (JDV_J226 / TRE_R338) et mode de prise en charge (TRE_R213)",
        {
            "domicile": [
                (R338, "27", "Soins à domicile", "equivalent"),
                (R338, "05", "Visite à domicile", "narrower"),
            ],
            "etablissement-sante": [(R338, "18", "Intra-hospitalier (dont équipe de liaison)", "inexact")],
            "ville": [(R338, "19", "Extra-hospitalier", "wider")],
            "had": [(R213, "31", "Hospitalisation à domicile (HAD)", "equivalent")],
            "ehpad": [(R338, "19", "Extra-hospitalier", "wider")],
        },
        {},
    ),
    (
        "sos-age-group-to-ror",
        "sos-age-group",
        "Tranche d'âge SOS vers public pris en charge du ROR (TRE_R239)",
        {
            "personne-agee": [
                (R239, "01", "Personnes âgées en perte d'autonomie et aidants", "narrower"),
                (R239, "03", "Personnes âgées autonomes", "narrower"),
            ],
        },
        {
            "aja": "Le ROR exprime l'âge par l'extension patient-type (ageRange), pas par TRE_R239.",
            "adulte": "Le ROR exprime l'âge par l'extension patient-type (ageRange), pas par TRE_R239.",
        },
    ),
    (
        "sos-structure-type-to-ror",
        "sos-structure-type",
        "Type de structure SOS vers type d'offre du ROR (JDV_J238 / TRE_R244)",
        {
            "etablissement-smr": [
                (R244, "111", "Soins Médicaux et de Réadaptation (SMR) oncologie", "narrower"),
                (R244, "112", "Soins Médicaux et de Réadaptation (SMR) oncologie et hématologie", "narrower"),
            ],
            "had": [(R244, "128", "Unité d'hospitalisation à domicile socle", "inexact")],
            "msp": [(R244, "99", "Maison de santé pluriprofessionnelle (MSP)", "equivalent")],
            "cpts": [(R244, "255", "Communauté Professionnelle Territoriale de Santé (CPTS)", "equivalent")],
            "maison-sport-sante": [(R244, "137", "Maison sport-santé", "equivalent")],
            "dac": [(R244, "178", "Dispositif d'Appui à la Coordination (DAC)", "equivalent")],
            "emspt": [(R244, "70", "Unité d'intervention extra-hospitalière", "wider")],
            "equipe-urgence-palliative": [(R244, "70", "Unité d'intervention extra-hospitalière", "wider")],
        },
        {},
    ),
]
