"""FHIR shapes of the seed data: the one module that decides what the JSON looks like.

A `Structure` becomes an Organization, its Locations, an MSSanté Endpoint, the referent's
Practitioner and PractitionerRole, and one HealthcareService per SOS category it offers.
HealthcareServices follow the ROR's shape (identifier, providedBy, location, type = TRE_R227,
specialty = TRE_R211 operational activity + SOS catalogue codings, characteristic = TRE_R213 care
mode + TRE_R338 reception modalities + SOS axes) so a ROR consumer reads them as it is; what the
ROR cannot say (SOS categories, axes, the entry lifecycle) uses the SOS code systems and
extensions. When the SOS profiles change, this module is what to adapt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhirsrv.canonical import DEFAULT_BASE
from fhirsrv.seeding.catalogue import CATEGORIES, STRUCTURE_TYPE
from fhirsrv.seeding.model import Service, Site, Structure
from fhirsrv.seeding.regions import region_tag

BASE = DEFAULT_BASE  # the demo is written under the shipped base; loading moves it
CS = f"{BASE}/CodeSystem"
SD = f"{BASE}/StructureDefinition"
LIFECYCLE_URL = f"{SD}/sos-entry-lifecycle"
# The statuses whose entries are listed: `active` follows them (fhirsrv/workflow/lifecycle.py).
LISTED = ("published", "verification-pending")
NOS = "https://mos.esante.gouv.fr/NOS"
R211 = f"{NOS}/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R213 = f"{NOS}/TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge"
R227 = f"{NOS}/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
R244 = f"{NOS}/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R338 = f"{NOS}/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"
R13_COMMUNE = f"{NOS}/TRE_R13-Commune/FHIR/TRE-R13-Commune"
R200_CHANNEL = f"{NOS}/TRE_R200-CanalCommunication/FHIR/TRE-R200-CanalCommunication"
R283_CONFIDENTIALITY = f"{NOS}/TRE_R283-NiveauConfidentialite/FHIR/TRE-R283-NiveauConfidentialite"
G07_ID_TYPE = f"{NOS}/TRE_G07-TypeIdentifiantStructure/FHIR/TRE-G07-TypeIdentifiantStructure"
G09_DEPARTEMENT = f"{NOS}/TRE_G09-DepartementOM/FHIR/TRE-G09-DepartementOM"
G15_PROFESSION = f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R23_EXERCISE_MODE = f"{NOS}/TRE_R23-ModeExercice/FHIR/TRE-R23-ModeExercice"
ROR_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition"
ROR_COMMUNE_COG = f"{ROR_SD}/ror-commune-cog"
ROR_CREATION_DATE = f"{ROR_SD}/ror-meta-creation-date"
ROR_SENSITIVE_UNIT = f"{ROR_SD}/ror-healthcareservice-sensitive-unit"
ROR_PATIENT_TYPE = f"{ROR_SD}/ror-healthcareservice-patient-type"
ROR_CHANNEL = f"{ROR_SD}/ror-telecom-communication-channel"
ROR_TELECOM_CONFIDENTIALITY = f"{ROR_SD}/ror-telecom-confidentiality-level"
ROR_EXERCISE_MODE = f"{ROR_SD}/ror-practitionerrole-unit-exercise-mode"
SOS_DEPARTEMENT = f"{SD}/sos-departement"
# Identifier systems and NOS TRE_G07 identifier types, as the sos-organization profile fixes them
# (profiles/build.py: FINESS, SIREN, SIRET slices of the ROR Organization).
FINESS = "http://finess.esante.gouv.fr"
SIRENE = "http://sirene.fr"
IDENTIFIERS = {
    "finess": (FINESS, "1", "FINESS"),
    "siren": (SIRENE, "2", "SIREN"),
    "siret": (SIRENE, "3", "SIRET"),
}
OFFER_ID_SYSTEM = f"{BASE}/sid/sos-offer"
LOCATION_ID_SYSTEM = f"{BASE}/sid/sos-location"
# Age range (ROR patient-type ageRange, years) covered by each SOS age group.
AGE_RANGES = {"aja": (15, 25), "adulte": (18, 120), "personne-agee": (75, 120)}

# Which file each type goes to, in the order a loader must follow so that every reference
# points to something already loaded (Organization.partOf points to earlier lines of its file).
RESOURCE_TYPES = (
    "Organization",
    "Location",
    "Endpoint",
    "Practitioner",
    "HealthcareService",
    "PractitionerRole",
)

# Service attribute -> SOS code system id (codes: catalogue.AUDIENCE, AGE_GROUP, ...).
AXES = (
    ("audiences", "sos-audience"),
    ("age_groups", "sos-age-group"),
    ("care_places", "sos-care-place"),
    ("phases", "sos-care-phase"),
    ("access_modes", "sos-access-mode"),
    ("pathways", "sos-pathway"),
)
R211_DISPLAY = {
    "004": "Algologie et Médecine de la douleur", "040": "Diététique et Nutrition",
    "076": "Soins palliatifs avec lits identifiés de soins palliatifs (LISP)",
    "080": "Médecine de la reproduction", "135": "Sexologie médicale", "139": "Tabacologie",
    "170": "Soins palliatifs", "200": "Orthophonie", "289": "Suivi psychologique",
    "314": "Activités de bien-être", "315": "Soins socio-esthétiques",
    "317": "Inform, éval, accomp et orient ouverture droits et accès presta aidé et aidant",
    "325": "Soutien et aide aux aidants et/ou à la famille/entourage",
    "330": "Promouvoir et sensibiliser aux activités physiques adaptées",
    "334": "Activité de prévention", "336": "Education thérapeutique", "339": "Kinésithérapie",
    "414": "Soins de support en oncologie et hématologie",
    "523": "Réadaptation des affections oncologiques", "532": "Réadaptation lymphologie",
}  # fmt: skip
R213_DISPLAY = {
    "11": "Equipe mobile extra-hospitalière", "16": "Lieu d'écoute", "28": "Hospitalisation complète (HC)",
    "29": "Hospitalisation de jour (HJ)", "31": "Hospitalisation à domicile (HAD)", "32": "Consultation (CS)",
    "42": "Prise en charge de groupe", "52": "Equipe mobile intra-hospitalière",
    "54": "Accueil individuel ou collectif", "58": "Coordination de parcours",
    "59": "Equipe d'intervention mobile",
}  # fmt: skip
R227_DISPLAY = {
    "01": "Médecine, Chirurgie, Obstétrique (MCO)", "02": "Soins Médicaux et de réadaptation (SMR)",
    "05": "Ville",
}  # fmt: skip
R244_DISPLAY = {
    "70": "Unité d'intervention extra-hospitalière", "72": "Guichet d'accueil, écoute, conseil, orientation",
    "99": "Maison de santé pluriprofessionnelle (MSP)", "111": "Soins Médicaux et de Réadaptation (SMR) oncologie",
    "128": "Unité d'hospitalisation à domicile socle", "137": "Maison sport-santé",
    "175": "Unités de soins palliatifs", "178": "Dispositif d'Appui à la Coordination (DAC)",
    "255": "Communauté Professionnelle Territoriale de Santé (CPTS)",
    "317": "Unité hospitalière de soins de support",
}  # fmt: skip
R338_DISPLAY = {"03": "En présentiel", "04": "Téléconsultation", "05": "Visite à domicile"}
CHILD_DISPLAY = {code: display for _, children in CATEGORIES.values() for code, display in children}


def org_id(key: str) -> str:
    return f"org-{key}"


def location_id(key: str, index: int) -> str:
    return f"loc-{key}-{index + 1}"


def service_id(key: str, index: int) -> str:
    return f"hs-{key}-{index + 1:02d}"


def ref(res_type: str, res_id: str, display: str | None = None) -> dict[str, str]:
    reference = {"reference": f"{res_type}/{res_id}"}
    if display:
        reference["display"] = display
    return reference


def _coding(system: str, code: str, display: str | None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _meta(profile: str, departement: str | None = None) -> dict[str, Any]:
    """The SOS profile, and for the types the ROR lists, the source-region tag it selects by."""
    meta: dict[str, Any] = {"profile": [f"{SD}/{profile}"]}
    if departement is not None:
        meta["tag"] = [region_tag(departement)]
    return meta


def address(site: Site) -> dict[str, Any]:
    commune = site.commune
    return {
        "extension": [
            {"url": SOS_DEPARTEMENT, "valueCoding": _coding(G09_DEPARTEMENT, commune.departement, None)}
        ],
        "use": "work",
        "type": "physical",
        "line": [site.line],
        "city": commune.name,
        "district": commune.departement,
        "postalCode": commune.postal_code,
        "country": "FR",
    }


def contact_point(system: str, value: str) -> dict[str, Any]:
    """A ContactPoint with the two extensions the ROR requires on every one: channel (fixed
    telephone or e-mail, NOS TRE_R200) and confidentiality (open access, TRE_R283)."""
    # Codes without displays: these two sit on every ContactPoint and would double the files.
    channel = "2" if system == "phone" else "3"  # "Téléphone fixe", "Courrier électronique"
    return {
        "extension": [
            {"url": ROR_CHANNEL, "valueCodeableConcept": concept(R200_CHANNEL, channel)},
            {"url": ROR_TELECOM_CONFIDENTIALITY, "valueCodeableConcept": concept(R283_CONFIDENTIALITY, "1")},
        ],
        "system": system,
        "value": value,
        "use": "work",
    }


def _telecom(phone: str, email: str) -> list[dict[str, Any]]:
    return [contact_point("phone", phone), contact_point("email", email)]


def _created(s: Structure) -> dict[str, Any]:
    return {"url": ROR_CREATION_DATE, "valueDateTime": s.created.isoformat()}


def lifecycle_extension(s: Structure) -> dict[str, Any]:
    life = s.lifecycle
    parts: list[dict[str, Any]] = [{"url": "status", "valueCode": life.status}]
    if life.last_verified:
        parts.append({"url": "lastVerified", "valueDate": life.last_verified.isoformat()})
    if life.validated_by_reference:
        parts.append({"url": "validatedBy", "valueReference": {"reference": life.validated_by_reference}})
    elif life.validated_by_text:
        parts.append({"url": "validatedBy", "valueString": life.validated_by_text})
    if life.status_date:
        parts.append({"url": "statusDate", "valueDateTime": f"{life.status_date.isoformat()}T09:00:00+00:00"})
    if life.status_reason:
        parts.append({"url": "statusReason", "valueString": life.status_reason})
    validator = life.validated_by_reference or life.validated_by_text
    if life.territory_validated_on:
        parts.append({"url": "territoryValidatedOn", "valueDateTime": f"{life.territory_validated_on.isoformat()}T09:00:00+00:00"})
    if life.region_validated_on and validator:
        parts.append({"url": "regionValidatedBy", "valueString": validator})
        parts.append({"url": "regionValidatedOn", "valueDateTime": f"{life.region_validated_on.isoformat()}T09:00:00+00:00"})
    if life.verification_requested:
        parts.append({"url": "verificationRequested", "valueDate": life.verification_requested.isoformat()})
    return {"url": LIFECYCLE_URL, "extension": parts}


def _identifier(kind: str, value: str) -> dict[str, Any]:
    system, type_code, display = IDENTIFIERS[kind]
    return {"type": concept(G07_ID_TYPE, type_code, display), "system": system, "value": value}


def _person_display(s: Structure) -> str:
    person = s.referent
    return " ".join(p for p in (person.prefix, person.given, person.family) if p)


def organization(s: Structure) -> dict[str, Any]:
    identifiers = []
    for kind, value in s.identifiers:
        if kind == "siret":  # a SIRET starts with the SIREN of the legal entity
            identifiers.append(_identifier("siren", value[:9]))
        identifiers.append(_identifier(kind, value))
    res: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org_id(s.key),
        "meta": _meta("sos-organization", s.departement),
        "extension": [_created(s), lifecycle_extension(s)],
        "identifier": identifiers,
        "active": s.lifecycle.status in LISTED,
        "type": [concept(f"{CS}/sos-structure-type", s.type, STRUCTURE_TYPE[s.type])],
        "name": s.name,
        "telecom": _telecom(s.phone, s.email),
        "address": [address(s.sites[0])],
    }
    if s.part_of:
        res["partOf"] = ref("Organization", org_id(s.part_of))
    res["contact"] = [
        {
            "name": {"text": _person_display(s), "family": s.referent.family, "given": [s.referent.given]},
            "telecom": [contact_point("email", s.referent_email)],
        }
    ]
    return res


def location(s: Structure, index: int) -> dict[str, Any]:
    site = s.sites[index]
    commune = site.commune
    return {
        "resourceType": "Location",
        "id": location_id(s.key, index),
        "meta": _meta("sos-location", s.departement),
        "extension": [
            {
                "url": ROR_COMMUNE_COG,
                "valueCodeableConcept": concept(R13_COMMUNE, commune.insee, commune.name),
            },
            _created(s),
        ],
        "identifier": [{"system": LOCATION_ID_SYSTEM, "value": location_id(s.key, index).upper()}],
        "status": "active" if s.lifecycle.status in LISTED else "inactive",
        "name": site.name,
        "mode": "instance",
        "address": address(site),
        "position": {"longitude": commune.lon, "latitude": commune.lat},
        "managingOrganization": ref("Organization", org_id(s.key)),
    }


def endpoint(s: Structure) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": f"end-{s.key}",
        "meta": _meta("sos-endpoint"),
        "status": "active" if s.lifecycle.status in LISTED else "off",
        "connectionType": _coding(
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "secure-email",
            "Secure email",
        ),
        "name": f"MSSanté – {s.name}",
        "managingOrganization": ref("Organization", org_id(s.key)),
        "payloadType": [concept("http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "any", "Any")],
        "address": f"mailto:{s.mssante}",
    }


def practitioner(s: Structure) -> dict[str, Any]:
    person = s.referent
    name: dict[str, Any] = {"use": "official", "family": person.family, "given": [person.given]}
    if person.prefix:
        name["prefix"] = [person.prefix]
    return {"resourceType": "Practitioner", "id": f"pra-{s.key}", "active": True, "name": [name]}


def practitioner_role(s: Structure) -> dict[str, Any]:
    """The structure's referent. The ROR allows one service and one telecom per role: the role
    points to the structure's first service, and gives the referent's e-mail."""
    profession = {"10": "Médecin", "60": "Infirmier"}[s.referent_profession]
    mode = {"S": "Salarié", "L": "Libéral, indépendant, artisan, commerçant", "B": "Bénévole"}
    return {
        "resourceType": "PractitionerRole",
        "id": f"prr-{s.key}",
        "meta": _meta("sos-practitionerrole", s.departement),
        "extension": [
            _created(s),
            {
                "url": ROR_EXERCISE_MODE,
                "valueCodeableConcept": concept(
                    R23_EXERCISE_MODE, s.referent_exercise_mode, mode[s.referent_exercise_mode]
                ),
            },
        ],
        "active": s.lifecycle.status in LISTED,
        "practitioner": ref("Practitioner", f"pra-{s.key}", _person_display(s)),
        "organization": ref("Organization", org_id(s.key), s.name),
        "code": [
            {
                "coding": [_coding(G15_PROFESSION, s.referent_profession, profession)],
                "text": "Personne référente de la structure (annuaire SOS)",
            }
        ],
        "location": [ref("Location", location_id(s.key, 0))],
        "healthcareService": [ref("HealthcareService", service_id(s.key, 0))],
        "telecom": [contact_point("email", s.referent_email)],
        "endpoint": [ref("Endpoint", f"end-{s.key}")],
    }


def _available_time(service: Service) -> list[dict[str, Any]]:
    """Opening hours; the ROR allows a single availableTime per service."""
    times = []
    for hours in service.hours:
        entry: dict[str, Any] = {"daysOfWeek": list(hours.days)}
        if hours.all_day:
            entry["allDay"] = True
        else:
            entry["availableStartTime"] = hours.start
            entry["availableEndTime"] = hours.end
        times.append(entry)
    return times


def _years(value: int) -> dict[str, Any]:
    return {"value": value}  # years, as in the ROR's own examples


def healthcare_service(s: Structure, index: int) -> dict[str, Any]:
    service = s.services[index]
    category_display = CATEGORIES[service.category][0]
    specialty = [
        concept(R211, service.activity, R211_DISPLAY.get(service.activity)),
        concept(f"{CS}/sos-category", service.category, category_display),
        *(concept(f"{CS}/sos-category", child, CHILD_DISPLAY[child]) for child in service.children),
    ]
    characteristic = [
        concept(R213, service.care_mode, R213_DISPLAY.get(service.care_mode)),
        *(concept(R338, code, R338_DISPLAY[code]) for code in service.delivery_modes),
    ]
    # Axis codings carry no display: the SOS CodeSystems have them, and they would be most of
    # the demo files' size.
    for attribute, system_id in AXES:
        characteristic += [concept(f"{CS}/{system_id}", code) for code in getattr(service, attribute)]
    ages = [AGE_RANGES[group] for group in service.age_groups] or [AGE_RANGES["adulte"]]
    age_range = {"low": _years(min(low for low, _ in ages)), "high": _years(max(high for _, high in ages))}
    res: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": service_id(s.key, index),
        "meta": _meta("sos-healthcareservice", s.departement),
        "extension": [
            _created(s),
            {"url": ROR_SENSITIVE_UNIT, "valueBoolean": False},
            {"url": ROR_PATIENT_TYPE, "extension": [{"url": "ageRange", "valueRange": age_range}]},
            lifecycle_extension(s),
        ],
        "identifier": [{"system": OFFER_ID_SYSTEM, "value": f"SOS-{s.key}-{index + 1:02d}"}],
        "active": s.lifecycle.status in LISTED,
        "providedBy": ref("Organization", org_id(s.key), s.name),
    }
    if service.offer_type:
        res["category"] = [concept(R244, service.offer_type, R244_DISPLAY.get(service.offer_type))]
    res |= {
        "type": [concept(R227, service.champ, R227_DISPLAY.get(service.champ))],
        "specialty": specialty,
        "location": [ref("Location", location_id(s.key, service.site))],
        "name": category_display,
        "comment": " ; ".join(CHILD_DISPLAY[child] for child in service.children),
        # One number per offer: its e-mail would be the structure's in most cases, and every
        # ROR ContactPoint costs half a kilobyte.
        "telecom": [contact_point("phone", service.phone)],
        "characteristic": characteristic,
        "communication": [concept("urn:ietf:bcp:47", "fr", "français")],
        "availableTime": _available_time(service),
        "endpoint": [ref("Endpoint", f"end-{s.key}")],
    }
    return res


def structure_resources(s: Structure) -> Iterator[dict[str, Any]]:
    """Every resource of a structure, in RESOURCE_TYPES order."""
    yield organization(s)
    for index in range(len(s.sites)):
        yield location(s, index)
    yield endpoint(s)
    yield practitioner(s)
    for index in range(len(s.services)):
        yield healthcare_service(s, index)
    yield practitioner_role(s)
