"""The SOS catalogue and axis codes the seed data uses: codes and French displays.

Copied from the catalogue draft (`../shared/domain/catalogue-draft.json`, version 0.1.0-draft),
the same codes the terminology CodeSystems publish; kept here as data so the seed builders and the
generator need no terminology files at run time. tests/seeding check them against terminology/.
"""

from __future__ import annotations

# category code -> (display, [(child code, display), ...])
CATEGORIES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "douleur": (
        "Prise en charge de la douleur",
        [
            ("douleur-consultation-douleur-chronique", "Consultation dédiée douleur chronique"),
            ("douleur-equipe-mobile", "Équipe mobile douleur"),
            ("douleur-analgesie-intrathecale", "Analgésie intrathécale"),
            ("douleur-hypnoanalgesie", "Hypnoanalgésie"),
            ("douleur-kinesitherapie", "Kinésithérapie à visée antalgique"),
            ("douleur-neurostimulation", "Neurostimulation (dont neurostimulation transcutanée)"),
            ("douleur-entretien-psychologique", "Entretien psychologique (douleur)"),
            (
                "douleur-techniques-interventionnelles",
                "Techniques antalgiques interventionnelles (cimentoplastie, radiofréquence…)",
            ),
        ],
    ),
    "dietetique-nutrition": (
        "Prise en charge diététique et nutritionnelle",
        [
            ("dietetique-consultation", "Consultation diététique individuelle"),
            ("dietetique-bilan-apres-cancer", "Bilan diététique (parcours après cancer)"),
            ("dietetique-atelier-collectif", "Atelier collectif de diététique / nutrition"),
            (
                "dietetique-prevention-denutrition",
                "Prévention et prise en charge de la dénutrition (support nutritionnel)",
            ),
        ],
    ),
    "psychologique": (
        "Prise en charge psychologique",
        [
            ("psychologique-entretien-individuel", "Consultation / entretien psychologique individuel"),
            ("psychologique-bilan-apres-cancer", "Bilan psychologique (parcours après cancer)"),
            ("psychologique-groupe-de-parole", "Groupe de parole (patients)"),
            ("psychologique-psychotherapie", "Psychothérapie (dont thérapie cognitivo-comportementale)"),
            ("psychologique-psycho-oncologie-psychiatrie", "Consultation de psycho-oncologie / psychiatrie"),
        ],
    ),
    "social-familial-professionnel": (
        "Prise en charge sociale, familiale et professionnelle",
        [
            ("social-accompagnement-social", "Accompagnement social (assistant·e de service social)"),
            ("social-acces-droits-aides-financieres", "Accès aux droits et aides financières"),
            ("social-maintien-retour-emploi", "Maintien et retour à l'emploi"),
            ("social-aide-domicile", "Aides à domicile et organisation du retour à domicile"),
            ("social-soutien-familial", "Soutien familial / médiation familiale"),
        ],
    ),
    "activite-physique-adaptee": (
        "Activité physique adaptée (APA)",
        [
            ("apa-bilan-fonctionnel-motivationnel", "Bilan fonctionnel et motivationnel d'APA"),
            ("apa-seances", "Séances d'APA encadrées (individuelles ou collectives)"),
            (
                "apa-orientation-sport-sante",
                "Orientation vers une Maison Sport-Santé / dispositif d'accompagnement vers l'activité physique",
            ),
        ],
    ),
    "hygiene-de-vie": (
        "Conseils d'hygiène de vie",
        [
            ("hygiene-de-vie-sevrage-tabagique", "Accompagnement au sevrage tabagique"),
            ("hygiene-de-vie-alcool", "Accompagnement à la réduction / au sevrage de l'alcool"),
            ("hygiene-de-vie-conseils", "Conseils d'hygiène de vie (alimentation, activité physique)"),
            ("hygiene-de-vie-education-therapeutique", "Éducation thérapeutique du patient (ETP)"),
        ],
    ),
    "soutien-proches-aidants": (
        "Soutien psychologique des proches et aidants",
        [
            ("aidants-entretien-psychologique", "Entretien psychologique pour les proches et aidants"),
            ("aidants-groupe-de-parole", "Groupe de parole pour proches et aidants"),
            ("aidants-accompagnement-deuil", "Accompagnement du deuil"),
            ("aidants-repit", "Solutions de répit pour les aidants"),
        ],
    ),
    "preservation-fertilite": (
        "Soutien à la mise en œuvre de la préservation de la fertilité",
        [
            ("fertilite-information", "Information sur les risques des traitements pour la fertilité"),
            (
                "fertilite-consultation-oncofertilite",
                "Consultation d'oncofertilité (CECOS / plateforme cancer et fertilité)",
            ),
        ],
    ),
    "troubles-sexualite": (
        "Prise en charge des troubles de la sexualité",
        [
            ("sexualite-consultation-oncosexologie", "Consultation d'oncosexologie / sexologie médicale"),
            ("sexualite-accompagnement-couple", "Accompagnement du couple et de la vie intime"),
        ],
    ),
    "soins-palliatifs": (
        "Soins palliatifs",
        [
            ("sp-consultation", "Consultation de soins palliatifs"),
            ("sp-hopital-de-jour", "Hôpital de jour de soins palliatifs"),
            ("sp-equipe-urgence-palliative", "Équipe d'urgence palliative à domicile (type Pallidom)"),
            ("sp-emspt", "Équipe mobile de soins palliatifs territoriale (EMSPT)"),
            ("sp-emasp", "Équipe mobile d'accompagnement en soins palliatifs (intra-hospitalière, EMASP)"),
            ("sp-had", "Hospitalisation à domicile (soins palliatifs)"),
            ("sp-usp", "Unité de soins palliatifs (USP)"),
            ("sp-lisp", "Lits identifiés de soins palliatifs (LISP)"),
            ("sp-accompagnement-benevole", "Accompagnement bénévole et soutien spirituel"),
        ],
    ),
    "bien-etre-image-de-soi": (
        "Bien-être et image de soi",
        [
            ("socio-esthetique", "Socio-esthétique"),
            ("conseil-en-image", "Conseil en image"),
            ("art-therapie", "Art-thérapie"),
            ("sophrologie", "Sophrologie"),
            ("reflexologie", "Réflexologie (dont plantaire)"),
            ("relaxation", "Relaxation"),
            ("meditation-pleine-conscience", "Méditation de pleine conscience"),
            ("hypnose", "Hypnose (hors hypnoanalgésie)"),
            ("acupuncture", "Acupuncture"),
        ],
    ),
    "reeducation-effets-secondaires": (
        "Rééducation et traitement des effets secondaires",
        [
            ("reeducation-kinesitherapie", "Kinésithérapie / rééducation fonctionnelle"),
            ("reeducation-orthophonie", "Orthophonie"),
            ("reeducation-ergotherapie", "Ergothérapie"),
            ("reeducation-lymphoedeme", "Prise en charge du lymphœdème (drainage, contention)"),
            ("effets-soins-bucco-dentaires", "Soins bucco-dentaires (odontologie)"),
            (
                "effets-gestion-effets-indesirables",
                "Consultation de suivi et gestion des effets indésirables des traitements",
            ),
            ("effets-fatigue-troubles-cognitifs", "Prise en charge de la fatigue et des troubles cognitifs"),
        ],
    ),
    "eri": (
        "Espace de rencontres et d'information (ERI)",
        [
            ("eri-accueil-ecoute-information", "Accueil, écoute et information"),
            ("eri-orientation", "Orientation (soins de support, associations, démarches)"),
            ("eri-rencontres-echanges", "Rencontres et échanges"),
        ],
    ),
}

AUDIENCE: dict[str, str] = {
    "patient": "Patients",
    "proche": "Proches",
    "aidant": "Aidants",
    "professionnel": "Professionnels",
}

AGE_GROUP: dict[str, str] = {
    "aja": "Adolescents et jeunes adultes (AJA)",
    "adulte": "Adultes",
    "personne-agee": "Personnes âgées",
}

CARE_PLACE: dict[str, str] = {
    "domicile": "À domicile",
    "etablissement-sante": "En établissement de santé (hôpital)",
    "ville": "En ville (cabinet, MSP, centre, association)",
    "had": "En hospitalisation à domicile (HAD)",
    "ehpad": "En EHPAD",
}

CARE_PHASE: dict[str, str] = {
    "avant-traitement": "Avant le traitement",
    "pendant-traitement": "Pendant le traitement",
    "apres-traitement": "Après le traitement (après-cancer)",
    "palliatif-fin-de-vie": "Phase palliative / fin de vie",
}

ACCESS_MODE: dict[str, str] = {
    "patients-had": "Patients en HAD",
    "patients-non-suivis-etablissement": "Patients non suivis dans l'établissement",
    "patients-suivis-etablissement": "Patients suivis dans l'établissement",
}

PATHWAY: dict[str, str] = {
    "parcours-soins-global-apres-cancer": "Parcours de soins global après le traitement d'un cancer",
}

STRUCTURE_TYPE: dict[str, str] = {
    "etablissement-sante-autorise": "Établissement de santé autorisé au traitement du cancer",
    "etablissement-sante-associe": "Établissement de santé associé",
    "etablissement-smr": "Établissement de soins médicaux et de réadaptation (SMR)",
    "had": "Établissement d'hospitalisation à domicile (HAD)",
    "association": "Association (patients, usagers, professionnels)",
    "msp": "Maison de santé pluriprofessionnelle (MSP)",
    "pole-sante": "Pôle de santé (libéral)",
    "centre-de-sante": "Centre de santé",
    "cpts": "Communauté professionnelle territoriale de santé (CPTS)",
    "structure-aap-parcours-apres-cancer": "Structure retenue à l'AAP ARS « parcours de soins global après cancer »",
    "maison-sport-sante": "Maison sport-santé",
    "dac": "Dispositif d'appui à la coordination (DAC)",
    "emspt": "Équipe mobile de soins palliatifs territoriale (EMSPT)",
    "equipe-urgence-palliative": "Équipe d'urgence palliative (type Pallidom)",
    "professionnel-liberal": "Professionnel de santé libéral (à titre individuel)",
}
