"""Draw one structure and its offers from the shape, with a caller-supplied random source.

The demo builder and the generator both call `draw_structure`; they only differ in how they
choose the type, the commune and the lifecycle state (fixed quotas for the demo, independent
draws for the generator). A caller passes a `random.Random` seeded per structure, so a structure
depends only on (seed, key) and not on what was drawn before it.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from fhirsrv.seeding import names
from fhirsrv.seeding.catalogue import CATEGORIES
from fhirsrv.seeding.model import Commune, Hours, Lifecycle, Service, Site, Structure
from fhirsrv.seeding.shape import (
    ACTIVITY_BY_CATEGORY,
    ACTIVITY_BY_CHILD,
    CARE_MODE_BY_CHILD,
    CHILD_RESTRICTIONS,
    COORDINATION,
    FAMILY_AXES,
    HAD,
    HOSPITAL,
    LIFECYCLE,
    OFFER_TYPE_BY_CHILD,
    PALLIATIVE,
    PREFERRED_CHILDREN,
    TELECONSULTATION,
    TYPES,
    TypeShape,
)

# Lifecycle dates are relative to this day, not to today, so the output never changes.
REFERENCE_DATE = date(2026, 10, 1)
PATHWAY = "parcours-soins-global-apres-cancer"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
ALL_DAYS = (*WEEKDAYS, "sat", "sun")

_SAINTS = (
    "Saint-Yves", "Sainte-Anne", "Saint-Joseph", "Saint-Michel", "des Genêts", "des Ajoncs",
    "de l'Estuaire", "du Littoral", "des Tilleuls", "Sainte-Marie",
)  # fmt: skip
_ASSOCIATIONS = (
    "Entraide cancer {c}", "Vivre après – {c}", "Les Ateliers du mieux-être ({c})", "Rose et Bleu {c}",
    "Oncosport {c}", "La Main tendue – {c}", "Bulle d'air {c}", "Ensemble face au cancer – {c}",
    "Sophro et bien-être {c}", "Les Cordées de l'espoir ({c})", "Parenthèse – {c}",
    "Activ'Santé {c}", "Écoute et partage – {c}",
)  # fmt: skip
# {c}: the commune's name; {of}: "de Rennes", "du Kremlin-Bicêtre"; {s}: a saint or place name.
NAME_TEMPLATES: dict[str, tuple[str, ...]] = {
    "etablissement-sante-autorise": (
        "Centre hospitalier {of}", "Clinique {s} – {c}", "Polyclinique {of}",
        "Hôpital privé {of}", "Centre de radiothérapie {of}",
    ),
    "etablissement-sante-associe": ("Centre hospitalier {of}", "Hôpital de proximité {of}", "Clinique {s} – {c}"),
    "etablissement-smr": ("Centre de SMR {of}", "Centre de rééducation {s} – {c}"),
    "had": ("HAD du pays {of}", "Hospitalisation à domicile {of}"),
    "association": _ASSOCIATIONS,
    "msp": ("Maison de santé pluriprofessionnelle {of}", "MSP {of}"),
    "pole-sante": ("Pôle de santé {of}",),
    "centre-de-sante": ("Centre de santé municipal {of}", "Centre de santé mutualiste {of}"),
    "cpts": ("CPTS du pays {of}", "CPTS {of} et environs"),
    "structure-aap-parcours-apres-cancer": ("Parcours après cancer – {c}", "Dispositif après-cancer du pays {of}"),
    "maison-sport-sante": ("Maison sport-santé {of}",),
    "dac": ("DAC du pays {of}", "Dispositif d'appui à la coordination {of}"),
    "emspt": ("Équipe mobile de soins palliatifs territoriale {of}",),
    "equipe-urgence-palliative": ("Équipe d'urgence palliative du pays {of}",),
}  # fmt: skip


def chosen(rng: random.Random, probabilities: dict[str, float]) -> list[str]:
    """The keys kept by independent draws, in the dict's order (so output order is stable)."""
    return [key for key, p in probabilities.items() if rng.random() < p]


def draw_name(rng: random.Random, type_code: str, commune: Commune, taken: set[str] | None = None) -> str:
    """A plausible name; with `taken`, one not used yet (other template, then a numbered site)."""
    templates = list(NAME_TEMPLATES[type_code])
    rng.shuffle(templates)
    saint = rng.choice(_SAINTS)
    candidates = [t.format(c=commune.name, of=commune.name_of, s=saint) for t in templates]
    if taken is None:
        return candidates[0]
    for name in candidates:
        if name not in taken:
            taken.add(name)
            return name
    number = 2
    while f"{candidates[0]} ({number})" in taken:
        number += 1
    name = f"{candidates[0]} ({number})"
    taken.add(name)
    return name


def draw_lifecycle(
    rng: random.Random,
    status: str,
    *,
    regional: str,
    territorial_reference: str | None = None,
    territorial: str | None = None,
) -> Lifecycle:
    """Dates and validators consistent with the procedure's rules (fhirsrv/workflow/sweep.py:
    asked to verify 365 days after the last verification, delisted 61 days after the request):
    verified within the year when published, asked to verify when pending, validated at the
    territorial level some days before the regional one."""
    days = {
        "published": (0, 330),
        "territorial-validated": (0, 45),
        "verification-pending": (366, 420),
        "delisted": (430, 800),
    }
    if status in ("draft", "submitted"):  # never validated yet
        return Lifecycle(status, status_date=REFERENCE_DATE - timedelta(days=rng.randint(0, 30)))
    if status == "rejected":
        return Lifecycle(
            status,
            status_date=REFERENCE_DATE - timedelta(days=rng.randint(5, 60)),
            status_reason="Statuts de plus de trois mois : merci de joindre des statuts à jour.",
        )
    if status == "withdrawn":
        return Lifecycle(status, status_date=REFERENCE_DATE - timedelta(days=rng.randint(5, 200)))
    low, high = days[status]
    verified = REFERENCE_DATE - timedelta(days=rng.randint(low, high))
    territory_on = verified - timedelta(days=rng.randint(3, 30))
    if status == "territorial-validated":
        return Lifecycle(
            status,
            verified,
            territorial_reference,
            None if territorial_reference else territorial,
            status_date=verified,
            territory_validated_on=verified,
        )
    requested = verified + timedelta(days=365) if status in ("verification-pending", "delisted") else None
    changed = {"published": verified, "verification-pending": requested}.get(status)
    if status == "delisted" and requested is not None:
        changed = requested + timedelta(days=61)
    return Lifecycle(
        status,
        verified,
        None,
        regional,
        status_date=changed,
        territory_validated_on=territory_on,
        region_validated_on=verified,
        verification_requested=requested,
    )


# Days before REFERENCE_DATE an entry in each state was created: old for entries that have
# been through yearly verification, recent for those still in the validation workflow.
CREATED_DAYS_AGO = {
    "published": (850, 1500),
    "verification-pending": (850, 1500),
    "delisted": (850, 1500),
    "territorial-validated": (60, 240),
    "submitted": (10, 90),
    "draft": (0, 30),
    "rejected": (30, 120),
    "withdrawn": (200, 900),
}
# Mode d'exercice (NOS TRE_R23) of a referent person, by structure type.
EXERCISE_MODE = {"association": "B", "msp": "L", "pole-sante": "L", "cpts": "L"}


def draw_status(rng: random.Random) -> str:
    return rng.choices(list(LIFECYCLE), weights=list(LIFECYCLE.values()))[0]


def _children(rng: random.Random, shape: TypeShape, category: str) -> list[str]:
    eligible = [
        code
        for code, _ in CATEGORIES[category][1]
        if shape.code in CHILD_RESTRICTIONS.get(code, {shape.code})
    ]
    preferred = [c for c in PREFERRED_CHILDREN.get(shape.code, {}).get(category, []) if c in eligible]
    others = [c for c in eligible if c not in preferred]
    if not eligible:
        return []
    count = max(len(preferred), min(len(eligible), rng.randint(*shape.children)))
    return preferred + sorted(rng.sample(others, count - len(preferred)), key=eligible.index)


def _hours(rng: random.Random, shape: TypeShape, care_mode: str) -> list[Hours]:
    if care_mode in ("28", "31", "59"):  # inpatient unit, HAD, palliative emergency team: always on
        return [Hours(ALL_DAYS, all_day=True)]
    if shape.code == "association":
        days = tuple(sorted(rng.sample(WEEKDAYS, rng.randint(1, 3)), key=WEEKDAYS.index))
        return [Hours(days, "14:00:00", "18:00:00")]
    if shape.code in ("msp", "pole-sante", "centre-de-sante"):
        return [Hours(WEEKDAYS, "08:30:00", "19:00:00")]
    return [Hours(WEEKDAYS, "09:00:00", "17:00:00")]


def draw_service(rng: random.Random, shape: TypeShape, category: str, children: list[str]) -> Service:
    """One offer: the axes drawn from the family's profile, adjusted for what the category implies."""
    axes = FAMILY_AXES[shape.family]
    audiences = chosen(rng, axes.audiences)
    age_groups = chosen(rng, axes.age_groups)
    care_places = chosen(rng, axes.care_places)
    phases = chosen(rng, axes.phases)
    access_modes = chosen(rng, axes.access_modes)
    pathways: list[str] = []
    if category == "soins-palliatifs":
        phases = ["palliatif-fin-de-vie"] + (["pendant-traitement"] if rng.random() < 0.3 else [])
    elif category == "soutien-proches-aidants":
        audiences = ["proche", "aidant"] + (["professionnel"] if rng.random() < 0.1 else [])
    elif category == "eri":
        audiences = ["patient", "proche", "aidant"]
    elif category == "preservation-fertilite":
        phases = ["avant-traitement"] + (["pendant-traitement"] if rng.random() < 0.5 else [])
        age_groups = ["aja", "adulte"]
    if shape.code == "structure-aap-parcours-apres-cancer":
        pathways, phases = [PATHWAY], ["apres-traitement"]
    elif shape.family != PALLIATIVE and category != "soins-palliatifs" and rng.random() < 0.03:
        pathways = [PATHWAY]
    if shape.family == PALLIATIVE and not phases:
        phases = ["palliatif-fin-de-vie"]
    if not phases:
        phases = ["pendant-traitement"]
    care_mode = next((CARE_MODE_BY_CHILD[c] for c in children if c in CARE_MODE_BY_CHILD), shape.care_mode)
    activity = next(
        (ACTIVITY_BY_CHILD[c] for c in children if c in ACTIVITY_BY_CHILD), ACTIVITY_BY_CATEGORY[category]
    )
    offer_type = next(
        (OFFER_TYPE_BY_CHILD[c] for c in children if c in OFFER_TYPE_BY_CHILD), shape.offer_type
    )
    at_home = "domicile" in care_places or shape.family in (HAD, PALLIATIVE)
    delivery = (["05"] if at_home else []) + ([] if shape.family == PALLIATIVE else ["03"])
    if shape.family in (HOSPITAL, COORDINATION) and rng.random() < TELECONSULTATION:
        delivery.append("04")
    return Service(
        category=category,
        children=children,
        care_mode=care_mode,
        activity=activity,
        champ=shape.champ,
        offer_type=offer_type,
        audiences=audiences,
        age_groups=age_groups,
        care_places=care_places,
        phases=phases,
        access_modes=access_modes,
        pathways=pathways,
        delivery_modes=sorted(delivery),
        hours=_hours(rng, shape, care_mode),
    )


def draw_services(rng: random.Random, shape: TypeShape) -> list[Service]:
    """The SOS categories a structure offers: independent draws, at least one."""
    categories = chosen(rng, shape.categories)
    if not categories:
        categories = [max(shape.categories, key=lambda c: shape.categories[c])]
    services = []
    for category in categories:
        children = _children(rng, shape, category)
        if children:
            services.append(draw_service(rng, shape, category, children))
    return services


def draw_structure(
    rng: random.Random,
    type_code: str,
    key: str,
    commune: Commune,
    lifecycle: Lifecycle,
    *,
    name: str | None = None,
    second_commune: Commune | None = None,
    services: list[Service] | None = None,
    part_of: str | None = None,
) -> Structure:
    """A whole structure: identity, sites, offers, referent and contacts."""
    shape = TYPES[type_code]
    dep = commune.departement
    name = name or draw_name(rng, type_code, commune)
    domain = f"{names.slug(name, 30)}.example.org"
    sites = [Site(name, commune, names.street(rng))]
    if second_commune is not None:
        sites.append(Site(f"{name} – site de {second_commune.name}", second_commune, names.street(rng)))
    services = services if services is not None else draw_services(rng, shape)
    phone = names.phone(rng, dep)
    for index, service in enumerate(services):
        service.site = index % len(sites) if len(sites) > 1 and rng.random() < 0.5 else 0
        service.phone = phone if rng.random() < 0.6 else names.phone(rng, dep)
    identifiers = [("siret", names.siret(rng))]
    if shape.identifier == "finess":
        identifiers.insert(0, ("finess", names.finess(rng, dep)))
    referent = names.person(rng, FAMILY_AXES[shape.family].doctor_share)
    low, high = CREATED_DAYS_AGO[lifecycle.status]
    created = REFERENCE_DATE - timedelta(days=rng.randint(low, high))
    return Structure(
        key=key,
        type=type_code,
        name=name,
        departement=dep,
        identifiers=identifiers,
        sites=sites,
        services=services,
        referent=referent,
        referent_phone=names.phone(rng, dep),
        referent_email=f"{names.slug(referent.given)}.{names.slug(referent.family)}@{domain}",
        phone=phone,
        email=f"contact@{domain}",
        mssante=f"{names.slug(name, 40)}.{key}@sos-demo.mssante.fr",
        lifecycle=lifecycle,
        created=created,
        referent_profession="10" if referent.prefix == "Dr" else "60",  # médecin, infirmier
        referent_exercise_mode=EXERCISE_MODE.get(type_code, "S"),
        part_of=part_of,
    )
