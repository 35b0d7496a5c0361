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

from fhirsrv.seeding.catalogue import CATEGORIES, STRUCTURE_TYPE
from fhirsrv.seeding.model import Service, Site, Structure

BASE = "https://sos.example.org/fhir"
CS = f"{BASE}/CodeSystem"
SD = f"{BASE}/StructureDefinition"
LIFECYCLE_URL = f"{SD}/sos-entry-lifecycle"
NOS = "https://mos.esante.gouv.fr/NOS"
R211 = f"{NOS}/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R213 = f"{NOS}/TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge"
R227 = f"{NOS}/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
R244 = f"{NOS}/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R338 = f"{NOS}/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"
R13_COMMUNE = f"{NOS}/TRE_R13-Commune/FHIR/TRE-R13-Commune"
ROR_COMMUNE_COG = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-commune-cog"
FINESS = "http://finess.sante.gouv.fr"
SIRET = "https://sirene.fr"
OFFER_ID_SYSTEM = f"{BASE}/sid/sos-offer"
LOCATION_ID_SYSTEM = f"{BASE}/sid/sos-location"
IDENTIFIER_SYSTEMS = {"finess": FINESS, "siret": SIRET}

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


def _meta(profile: str | None) -> dict[str, Any]:
    return {"profile": [f"{SD}/{profile}"]} if profile else {}


def address(site: Site) -> dict[str, Any]:
    commune = site.commune
    return {
        "use": "work",
        "type": "physical",
        "line": [site.line],
        "city": commune.name,
        "district": commune.departement,
        "postalCode": commune.postal_code,
        "country": "FR",
    }


def _telecom(phone: str, email: str) -> list[dict[str, str]]:
    return [
        {"system": "phone", "value": phone, "use": "work"},
        {"system": "email", "value": email, "use": "work"},
    ]


def lifecycle_extension(s: Structure) -> dict[str, Any]:
    life = s.lifecycle
    parts: list[dict[str, Any]] = [{"url": "status", "valueCode": life.status}]
    if life.last_verified:
        parts.append({"url": "lastVerified", "valueDate": life.last_verified.isoformat()})
    if life.validated_by_reference:
        parts.append({"url": "validatedBy", "valueReference": {"reference": life.validated_by_reference}})
    elif life.validated_by_text:
        parts.append({"url": "validatedBy", "valueString": life.validated_by_text})
    return {"url": LIFECYCLE_URL, "extension": parts}


def organization(s: Structure) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org_id(s.key),
        "meta": _meta("sos-organization"),
        "identifier": [{"system": IDENTIFIER_SYSTEMS[kind], "value": value} for kind, value in s.identifiers],
        "active": s.lifecycle.status != "delisted",
        "type": [concept(f"{CS}/sos-structure-type", s.type, STRUCTURE_TYPE[s.type])],
        "name": s.name,
        "telecom": _telecom(s.phone, s.email),
        "address": [address(s.sites[0])],
    }
    if s.part_of:
        res["partOf"] = ref("Organization", org_id(s.part_of))
    return res


def location(s: Structure, index: int) -> dict[str, Any]:
    site = s.sites[index]
    commune = site.commune
    return {
        "resourceType": "Location",
        "id": location_id(s.key, index),
        "meta": _meta("sos-location"),
        "extension": [
            {
                "url": ROR_COMMUNE_COG,
                "valueCodeableConcept": concept(R13_COMMUNE, commune.insee, commune.name),
            }
        ],
        "identifier": [{"system": LOCATION_ID_SYSTEM, "value": location_id(s.key, index).upper()}],
        "status": "inactive" if s.lifecycle.status == "delisted" else "active",
        "name": site.name,
        "mode": "instance",
        "telecom": [{"system": "phone", "value": s.phone, "use": "work"}],
        "address": address(site),
        "position": {"longitude": commune.lon, "latitude": commune.lat},
        "managingOrganization": ref("Organization", org_id(s.key)),
    }


def endpoint(s: Structure) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": f"end-{s.key}",
        "meta": _meta("sos-endpoint"),
        "status": "off" if s.lifecycle.status == "delisted" else "active",
        "connectionType": _coding(
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "direct-project",
            "Direct Project",
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
    person = s.referent
    display = " ".join(p for p in (person.prefix, person.given, person.family) if p)
    return {
        "resourceType": "PractitionerRole",
        "id": f"prr-{s.key}",
        "meta": _meta("sos-practitionerrole"),
        "active": s.lifecycle.status != "delisted",
        "practitioner": ref("Practitioner", f"pra-{s.key}", display),
        "organization": ref("Organization", org_id(s.key), s.name),
        "code": [{"text": "Personne référente de la structure (annuaire SOS)"}],
        "location": [ref("Location", location_id(s.key, 0))],
        "healthcareService": [ref("HealthcareService", service_id(s.key, i)) for i in range(len(s.services))],
        "telecom": _telecom(s.referent_phone, s.referent_email),
        "endpoint": [ref("Endpoint", f"end-{s.key}")],
    }


def _available_time(service: Service) -> list[dict[str, Any]]:
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
    res: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": service_id(s.key, index),
        "meta": _meta("sos-healthcareservice"),
        "extension": [lifecycle_extension(s)],
        "identifier": [{"system": OFFER_ID_SYSTEM, "value": f"SOS-{s.key}-{index + 1:02d}"}],
        "active": s.lifecycle.status in ("published", "verification-pending"),
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
        "telecom": _telecom(service.phone, service.email),
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
