"""Writes the ROR and SOS StructureDefinitions and SearchParameters of profiles/ as JSON.

The JSON files are what the server loads; this script is where they are authored, so that a
profile reads as a short list of constraints (like FHIR Shorthand) instead of hundreds of
lines of JSON. The ROR part transcribes the ANS implementation guide's FHIR Shorthand
(github.com/ansforge/IG-fhir-repertoire-offre-ressources-sante, input/fsh/) for the elements
fhirsrv relies on; profiles/ror/README.md lists where it deviates and why.

Usage: python profiles/build.py   (rewrites profiles/ror/*.json and profiles/sos/*.json)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SOS = "https://sos.example.org/fhir"
SOS_SD = f"{SOS}/StructureDefinition/"
ROR_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
ROR_SP = "https://interop.esante.gouv.fr/ig/fhir/ror/SearchParameter/"
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
NOS = "https://mos.esante.gouv.fr/NOS/"


def jdv(name: str) -> str:
    return f"{NOS}JDV_{name}/FHIR/JDV-{name}"


def tre(name: str) -> str:
    return f"{NOS}TRE_{name}/FHIR/TRE-{name}"


def sos_cs(name: str) -> str:
    return f"{SOS}/CodeSystem/{name}"


def sos_vs(name: str) -> str:
    return f"{SOS}/ValueSet/{name}"


# -- element helpers: each returns one differential element --------------------------------


def el(el_id: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": el_id, "path": ".".join(p.split(":")[0] for p in el_id.split("."))}
    for key, value in kw.items():
        if key == "card":
            lo, hi = value.split("..")
            out["min"], out["max"] = int(lo), hi
        elif key == "slice_name":
            out["sliceName"] = value
        else:
            out[key] = value
    return out


def binding(vs: str, strength: str = "required") -> dict[str, Any]:
    return {"strength": strength, "valueSet": vs}


def by_value(*paths: str, rules: str = "open") -> dict[str, Any]:
    return {"discriminator": [{"type": "value", "path": p} for p in paths], "rules": rules}


def ext_type(url: str) -> list[dict[str, Any]]:
    return [{"code": "Extension", "profile": [url]}]


def extension_slices(base: str, slices: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """`base` sliced by url, one slice per (name, extension url, cardinality)."""
    out = [el(base, slicing=by_value("url"))]
    for name, url, card in slices:
        out.append(el(f"{base}:{name}", slice_name=name, card=card, type=ext_type(url)))
    return out


def coded_slice(base: str, name: str, card: str, system: str, vs: str | None) -> list[dict[str, Any]]:
    """A CodeableConcept slice recognised by its coding.system, optionally bound."""
    first = el(f"{base}:{name}", slice_name=name, card=card)
    if vs:
        first["binding"] = binding(vs)
    return [first, el(f"{base}:{name}.coding.system", fixedUri=system)]


def telecom_rules(base: str) -> list[dict[str, Any]]:
    """The ROR's rules for every ContactPoint: a value, a channel and a confidentiality level."""
    return [
        el(f"{base}.value", card="1..1"),
        *extension_slices(
            f"{base}.extension",
            [
                ("ror-telecom-communication-channel", ROR_SD + "ror-telecom-communication-channel", "1..1"),
                ("ror-telecom-usage", ROR_SD + "ror-telecom-usage", "0..1"),
                ("ror-telecom-confidentiality-level", ROR_SD + "ror-telecom-confidentiality-level", "1..1"),
            ],
        ),
    ]


def available_time_rules(base: str) -> list[dict[str, Any]]:
    return [
        el(base, card="0..1"),
        *extension_slices(
            f"{base}.extension",
            [
                ("ror-available-time-type-of-time", ROR_SD + "ror-available-time-type-of-time", "0..1"),
                (
                    "ror-available-time-effective-opening-closing-date",
                    ROR_SD + "ror-available-time-effective-opening-closing-date",
                    "0..1",
                ),
                (
                    "ror-available-time-number-days-of-week",
                    ROR_SD + "ror-available-time-number-days-of-week",
                    "0..1",
                ),
            ],
        ),
    ]


# -- StructureDefinition shells ------------------------------------------------------------


def profile(
    sd_id: str, url: str, name: str, title: str, base: str, res_type: str, description: str, elements: list
) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": sd_id,
        "url": url,
        "version": "0.1.0",
        "name": name,
        "title": title,
        "status": "draft",
        "description": description,
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": res_type,
        "baseDefinition": base,
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def extension(
    sd_id: str, url: str, name: str, description: str, contexts: list[str], elements: list
) -> dict[str, Any]:
    sd = profile(sd_id, url, name, name, CORE_SD + "Extension", "Extension", description, [])
    sd["kind"] = "complex-type"
    sd["context"] = [{"type": "element", "expression": c} for c in contexts]
    sd["differential"]["element"] = [
        el("Extension"),
        *elements,
        el("Extension.url", fixedUri=url),
    ]
    return sd


def simple_extension(
    sd_id: str,
    url: str,
    name: str,
    description: str,
    contexts: list[str],
    value_type: str,
    vs: str | None = None,
) -> dict[str, Any]:
    value = el("Extension.value[x]", card="1..1", type=[{"code": value_type}])
    if vs:
        value["binding"] = binding(vs)
    return extension(sd_id, url, name, description, contexts, [el("Extension.extension", card="0..0"), value])


def complex_extension(
    sd_id: str, url: str, name: str, description: str, contexts: list[str], parts: list[tuple]
) -> dict[str, Any]:
    """An extension made of nested ones: parts are (name, card, value types, bound ValueSet)."""
    elements = [el("Extension.extension", slicing=by_value("url"))]
    for part, card, types, vs in parts:
        base = f"Extension.extension:{part}"
        value = el(f"{base}.value[x]", card="1..1", type=[{"code": t} for t in types])
        if vs:
            value["binding"] = binding(vs)
        elements += [el(base, slice_name=part, card=card), el(f"{base}.url", fixedUri=part), value]
    elements.append(el("Extension.value[x]", card="0..0"))
    return extension(sd_id, url, name, description, contexts, elements)


# -- ROR -------------------------------------------------------------------------------------


def ror_extensions() -> list[dict[str, Any]]:
    hs = ["HealthcareService"]
    everywhere = ["Location", "Organization", "Practitioner", "PractitionerRole", "HealthcareService"]
    patient_type = complex_extension(
        "ror-healthcareservice-patient-type",
        ROR_SD + "ror-healthcareservice-patient-type",
        "RORHealthcareServicePatientType",
        "Public pris en charge : tranche d'âge et type de patientèle (publicPrisEnCharge).",
        hs,
        [
            ("supportedPatientInfo", "0..*", ["CodeableConcept"], jdv("J29-PublicPrisEnCharge-ROR")),
            ("ageRange", "1..1", ["Range"], None),
        ],
    )
    patient_type["differential"]["element"][-1:-1] = [
        el("Extension.extension:ageRange.value[x].low", card="1..1"),
        el("Extension.extension:ageRange.value[x].high", card="1..1"),
    ]
    contact = complex_extension(
        "ror-healthcareservice-contact",
        ROR_SD + "ror-healthcareservice-contact",
        "RORHealthcareServiceContact",
        "Personne ou service point de contact de l'offre.",
        hs,
        [
            ("name", "0..1", ["HumanName"], None),
            ("purposeContact", "0..1", ["CodeableConcept"], jdv("J221-NatureContact-ROR")),
            ("description", "0..1", ["string"], None),
        ],
    )
    contact["differential"]["element"][-1:-1] = [
        el("Extension.extension:ror-function-contact", slice_name="ror-function-contact", card="0..1"),
        el("Extension.extension:ror-function-contact.url", fixedUri=ROR_SD + "ror-contact-function-contact"),
        el(
            "Extension.extension:ror-confidentiality-level",
            slice_name="ror-confidentiality-level",
            card="1..1",
            type=ext_type(ROR_SD + "ror-confidentiality-level"),
        ),
        el(
            "Extension.extension:ror-healthcareservice-contact-telecom",
            slice_name="ror-healthcareservice-contact-telecom",
            card="0..*",
        ),
        el(
            "Extension.extension:ror-healthcareservice-contact-telecom.url",
            fixedUri=ROR_SD + "ror-healthcareservice-contact-telecom",
        ),
    ]
    territorial = complex_extension(
        "ror-territorial-division",
        ROR_SD + "ror-territorial-division",
        "RORTerritorialDivision",
        "Zone d'intervention : divisions territoriales où habitent les personnes prises en charge.",
        ["HealthcareService", "Organization"],
        [
            (
                "typeTerritorialDivision",
                "1..1",
                ["CodeableConcept"],
                jdv("J223-TypeDivisionTerritoriale-ROR"),
            ),
            ("codeTerritorialDivision", "1..1", ["CodeableConcept"], None),
        ],
    )
    return [
        simple_extension(
            "ror-meta-creation-date",
            ROR_SD + "ror-meta-creation-date",
            "RORMetaCreationDate",
            "Date de création dans le ROR régional (métadonnée).",
            everywhere,
            "dateTime",
        ),
        simple_extension(
            "ror-healthcareservice-sensitive-unit",
            ROR_SD + "ror-healthcareservice-sensitive-unit",
            "RORHealthcareServiceSensitiveUnit",
            "Unité sensible : toutes les informations de description de l'offre sont confidentielles.",
            hs,
            "boolean",
        ),
        patient_type,
        contact,
        territorial,
        simple_extension(
            "ror-telecom-communication-channel",
            ROR_SD + "ror-telecom-communication-channel",
            "RORTelecomCommunicationChannel",
            "Canal de communication d'une adresse de télécommunication.",
            ["ContactPoint"],
            "CodeableConcept",
            jdv("J225-CanalCommunication-ROR"),
        ),
        simple_extension(
            "ror-telecom-confidentiality-level",
            ROR_SD + "ror-telecom-confidentiality-level",
            "RORTelecomConfidentialityLevel",
            "Niveau de restriction de l'accès à une adresse de télécommunication.",
            ["ContactPoint"],
            "CodeableConcept",
            jdv("J222-NiveauConfidentialite-ROR"),
        ),
        simple_extension(
            "ror-telecom-usage",
            ROR_SD + "ror-telecom-usage",
            "RORTelecomUsage",
            "Utilisation du canal de communication.",
            ["ContactPoint"],
            "CodeableConcept",
        ),
        simple_extension(
            "ror-confidentiality-level",
            ROR_SD + "ror-confidentiality-level",
            "RORConfidentialityLevel",
            "Niveau de restriction de l'accès à un contact.",
            ["HealthcareService"],
            "CodeableConcept",
            jdv("J222-NiveauConfidentialite-ROR"),
        ),
        simple_extension(
            "ror-act-type",
            ROR_SD + "ror-act-type",
            "RORActType",
            "Type d'acte (spécifique ou hors cabinet) d'une caractéristique d'offre.",
            ["HealthcareService.characteristic"],
            "code",
            "https://interop.esante.gouv.fr/ig/fhir/ror/ValueSet/act-type-ror-valueset",
        ),
        simple_extension(
            "ror-commune-cog",
            ROR_SD + "ror-commune-cog",
            "RORCommuneCog",
            "Code officiel géographique (COG INSEE) de la commune du lieu.",
            ["Location"],
            "CodeableConcept",
            jdv("J124-Commune"),
        ),
        simple_extension(
            "ror-practitionerrole-unit-exercise-mode",
            ROR_SD + "ror-practitionerrole-unit-exercise-mode",
            "RORPractitionerRoleUnitExerciseMode",
            "Mode d'exercice du professionnel dans le cadre de l'offre décrite.",
            ["PractitionerRole"],
            "CodeableConcept",
            jdv("J217-ModeExercice-ROR"),
        ),
    ]


def ror_healthcareservice() -> dict[str, Any]:
    hs = "HealthcareService"
    ch = f"{hs}.characteristic"
    act_type = ROR_SD + "ror-act-type"

    def characteristic(name: str, card: str, system: str, vs: str, act: str | None) -> list[dict[str, Any]]:
        out = coded_slice(ch, name, card, system, vs)
        if act is None:
            out.append(el(f"{ch}:{name}.extension:ror-act-type", card="0..0"))
        else:
            out += [
                el(f"{ch}:{name}.extension:ror-act-type", card="1..1"),
                el(f"{ch}:{name}.extension:ror-act-type.value[x]", fixedCode=act),
            ]
        return out

    elements = [
        el(f"{hs}.meta.lastUpdated", card="1..1"),
        *extension_slices(
            f"{hs}.extension",
            [
                ("ror-territorial-division", ROR_SD + "ror-territorial-division", "0..*"),
                (
                    "ror-healthcareservice-sensitive-unit",
                    ROR_SD + "ror-healthcareservice-sensitive-unit",
                    "1..1",
                ),
                (
                    "ror-healthcareservice-no-consent-habilitation",
                    ROR_SD + "ror-healthcareservice-no-consent-habilitation",
                    "0..1",
                ),
                (
                    "ror-healthcareservice-psychiatric-sector",
                    ROR_SD + "ror-healthcareservice-psychiatric-sector",
                    "0..*",
                ),
                ("ror-healthcareservice-patient-type", ROR_SD + "ror-healthcareservice-patient-type", "1..1"),
                ("ror-healthcareservice-contact", ROR_SD + "ror-healthcareservice-contact", "0..*"),
                ("ror-meta-creation-date", ROR_SD + "ror-meta-creation-date", "1..1"),
            ],
        ),
        el(f"{hs}.identifier", card="1..1"),
        el(
            f"{hs}.providedBy",
            type=[
                {
                    "code": "Reference",
                    "targetProfile": [CORE_SD + "Organization", ROR_SD + "ror-organization"],
                }
            ],
        ),
        el(f"{hs}.category", card="0..1", binding=binding(jdv("J238-TypeOffre-ROR"))),
        el(f"{hs}.type", card="1..1", binding=binding(jdv("J20-ChampActivite-ROR"))),
        el(f"{hs}.specialty", card="1..*", slicing=by_value("coding.system")),
        *coded_slice(
            f"{hs}.specialty",
            "operationalActivity",
            "1..1",
            tre("R211-ActiviteOperationnelle"),
            jdv("J17-ActiviteOperationnelle-ROR"),
        ),
        el(
            f"{hs}.location",
            type=[{"code": "Reference", "targetProfile": [CORE_SD + "Location", ROR_SD + "ror-location"]}],
        ),
        el(f"{hs}.telecom"),
        *telecom_rules(f"{hs}.telecom"),
        el(ch, card="1..*", slicing=by_value("coding.system", f"extension('{act_type}')")),
        *extension_slices(f"{ch}.extension", [("ror-act-type", act_type, "0..1")]),
        *characteristic(
            "careMode", "1..1", tre("R213-ModePriseEnCharge"), jdv("J19-ModePriseEnCharge-ROR"), None
        ),
        *characteristic(
            "receptionModality", "0..*", tre("R338-ModaliteAccueil"), jdv("J226-ModaliteAccueil-ROR"), None
        ),
        *characteristic(
            "specificAct", "0..*", tre("R210-ActeSpecifique"), jdv("J16-ActeSpecifique-ROR"), "specificAct"
        ),
        *characteristic(
            "outsideOfficeAct",
            "0..*",
            tre("R210-ActeSpecifique"),
            jdv("J16-ActeSpecifique-ROR"),
            "outsideOfficeAct",
        ),
        *available_time_rules(f"{hs}.availableTime"),
        el(f"{hs}.notAvailable", slicing=by_value("id")),
        el(f"{hs}.notAvailable:closingReopeningDate", slice_name="closingReopeningDate", card="0..1"),
        el(f"{hs}.notAvailable:closingReopeningDate.id", fixedString="closingReopeningDate"),
    ]
    return profile(
        "ror-healthcareservice",
        ROR_SD + "ror-healthcareservice",
        "RORHealthcareService",
        "ROR HealthcareService (offre opérationnelle)",
        CORE_SD + "HealthcareService",
        hs,
        "Prestations qu'une structure peut réaliser pour répondre au besoin de santé d'une personne (ROR).",
        elements,
    )


def ror_organization() -> dict[str, Any]:
    org = "Organization"
    identifier_types = [
        ("idNatSt", "40", "0..*"),
        ("finess", "1", "0..1"),
        ("sirene", "2", "0..1"),
        ("numSIRET", "3", "0..1"),
        ("rppsRang", "4", "0..1"),
        ("adeliRang", "0", "0..1"),
        ("identifierOI", "42", "0..1"),
    ]
    identifiers = [el(f"{org}.identifier", slicing=by_value("type.coding.code"))]
    for name, code, card in identifier_types:
        identifiers += [
            el(f"{org}.identifier:{name}", slice_name=name, card=card),
            el(f"{org}.identifier:{name}.type", card="1..1"),
            el(f"{org}.identifier:{name}.type.coding.code", fixedCode=code),
        ]
    # The ROR fixes these two slices' systems itself (numSIRET with the SIREN register's).
    identifiers += [
        el(f"{org}.identifier:numSIRET.system", patternUri="http://sirene.fr"),
        el(f"{org}.identifier:identifierOI.system", patternUri="https://oi.esante.gouv.fr"),
    ]
    elements = [
        el(f"{org}.meta.lastUpdated", card="1..1"),
        *extension_slices(
            f"{org}.extension",
            [
                ("ror-organization-price", ROR_SD + "ror-organization-price", "0..*"),
                ("ror-territorial-division", ROR_SD + "ror-territorial-division", "0..*"),
                (
                    "ror-organization-financial-help-type",
                    ROR_SD + "ror-organization-financial-help-type",
                    "0..*",
                ),
                (
                    "ror-organization-accomodation-family",
                    ROR_SD + "ror-organization-accomodation-family",
                    "0..1",
                ),
                ("ror-organization-closing-type", ROR_SD + "ror-organization-closing-type", "0..1"),
                ("organization-period", CORE_SD + "organization-period", "0..1"),
                ("ror-meta-comment", ROR_SD + "ror-meta-comment", "0..1"),
                ("ror-meta-creation-date", ROR_SD + "ror-meta-creation-date", "1..1"),
            ],
        ),
        *identifiers,
        el(f"{org}.name", card="0..1"),
        el(f"{org}.alias", card="0..1"),
        el(f"{org}.telecom"),
        *telecom_rules(f"{org}.telecom"),
        el(f"{org}.address", card="0..1"),
        el(f"{org}.partOf", type=[{"code": "Reference", "targetProfile": [ROR_SD + "ror-organization"]}]),
        el(f"{org}.contact.purpose", binding=binding(jdv("J221-NatureContact-ROR"))),
        *telecom_rules(f"{org}.contact.telecom"),
    ]
    return profile(
        "ror-organization",
        ROR_SD + "ror-organization",
        "ROROrganization",
        "ROR Organization (entité juridique, entité géographique, organisation interne)",
        CORE_SD + "Organization",
        org,
        "Organismes sanitaires, médico-sociaux et sociaux immatriculés au FINESS et organisations internes (ROR).",
        elements,
    )


def ror_location() -> dict[str, Any]:
    loc = "Location"
    adxp = [
        ("careOf", "iso21090-ADXP-careOf"),
        ("additionalLocator", "iso21090-ADXP-additionalLocator"),
        ("houseNumber", "iso21090-ADXP-houseNumber"),
        ("buildingNumberSuffix", "iso21090-ADXP-buildingNumberSuffix"),
        ("streetNameType", "iso21090-ADXP-streetNameType"),
        ("streetNameBase", "iso21090-ADXP-streetNameBase"),
        ("postalBox", "iso21090-ADXP-postBox"),
    ]
    elements = [
        el(f"{loc}.meta.lastUpdated", card="1..1"),
        *extension_slices(
            f"{loc}.extension",
            [
                ("ror-location-status", ROR_SD + "ror-location-status", "0..1"),
                ("ror-commune-cog", ROR_SD + "ror-commune-cog", "1..1"),
                ("ror-location-equipment", ROR_SD + "ror-location-equipment", "0..*"),
                ("ror-location-residential-capacity", ROR_SD + "ror-location-residential-capacity", "0..*"),
                ("ror-location-supported-capacity", ROR_SD + "ror-location-supported-capacity", "0..*"),
                ("ror-meta-creation-date", ROR_SD + "ror-meta-creation-date", "1..1"),
            ],
        ),
        el(f"{loc}.identifier", slicing=by_value("type.coding.code")),
        el(f"{loc}.identifier:idExterneSynchro", slice_name="idExterneSynchro", card="0..1"),
        el(f"{loc}.identifier:idExterneSynchro.type", card="1..1"),
        el(f"{loc}.identifier:idExterneSynchro.type.coding.code", fixedCode="26"),
        el(f"{loc}.identifier:idLocation", slice_name="idLocation", card="0..1"),
        el(f"{loc}.identifier:idLocation.type", card="1..1"),
        el(f"{loc}.identifier:idLocation.type.coding.code", fixedCode="25"),
        el(f"{loc}.type", card="0..1", binding=binding(jdv("J198-FonctionLieu-ROR"))),
        el(f"{loc}.telecom"),
        *telecom_rules(f"{loc}.telecom"),
        el(f"{loc}.address"),
        *extension_slices(f"{loc}.address.line.extension", [(n, CORE_SD + u, "0..1") for n, u in adxp]),
        el(f"{loc}.position"),
        *extension_slices(
            f"{loc}.position.extension",
            [("ror-coordinate-reliability", ROR_SD + "ror-coordinate-reliability", "0..1")],
        ),
    ]
    return profile(
        "ror-location",
        ROR_SD + "ror-location",
        "RORLocation",
        "ROR Location (lieu de réalisation de l'offre)",
        CORE_SD + "Location",
        loc,
        "Espace disposant d'un ensemble de ressources pour réaliser une offre (ROR).",
        elements,
    )


def ror_practitionerrole() -> dict[str, Any]:
    pr = "PractitionerRole"
    elements = [
        el(f"{pr}.meta.lastUpdated", card="1..1"),
        *extension_slices(
            f"{pr}.extension",
            [
                (
                    "ror-practitionerrole-unit-exercise-mode",
                    ROR_SD + "ror-practitionerrole-unit-exercise-mode",
                    "1..1",
                ),
                ("ror-practitionerrole-name", ROR_SD + "ror-practitionerrole-name", "0..1"),
                ("ror-meta-creation-date", ROR_SD + "ror-meta-creation-date", "1..1"),
                ("ror-meta-comment", ROR_SD + "ror-meta-comment", "0..1"),
            ],
        ),
        el(f"{pr}.identifier", card="0..1"),
        el(f"{pr}.practitioner", card="1..1"),
        el(
            f"{pr}.organization", type=[{"code": "Reference", "targetProfile": [ROR_SD + "ror-organization"]}]
        ),
        el(f"{pr}.code", card="1..1", binding=binding(jdv("J229-ProfessionSante-ROR"))),
        el(f"{pr}.healthcareService", card="1..1"),
        el(f"{pr}.telecom", card="0..1"),
        *telecom_rules(f"{pr}.telecom"),
        *available_time_rules(f"{pr}.availableTime"),
    ]
    return profile(
        "ror-practitionerrole",
        ROR_SD + "ror-practitionerrole",
        "RORPractitionerRole",
        "ROR PractitionerRole (situation opérationnelle)",
        CORE_SD + "PractitionerRole",
        pr,
        "Modalités d'exercice opérationnelles du professionnel dans la réalisation de l'offre (ROR).",
        elements,
    )


def ror_act_type_terminology() -> list[dict[str, Any]]:
    cs_url = "https://interop.esante.gouv.fr/ig/fhir/ror/CodeSystem/act-type-ror-codesystem"
    return [
        {
            "resourceType": "CodeSystem",
            "id": "act-type-ror-codesystem",
            "url": cs_url,
            "status": "active",
            "content": "complete",
            "concept": [
                {"code": "specificAct", "display": "Acte spécifique"},
                {"code": "outsideOfficeAct", "display": "Acte réalisé hors cabinet"},
            ],
        },
        {
            "resourceType": "ValueSet",
            "id": "act-type-ror-valueset",
            "url": "https://interop.esante.gouv.fr/ig/fhir/ror/ValueSet/act-type-ror-valueset",
            "status": "active",
            "compose": {"include": [{"system": cs_url}]},
        },
    ]


# -- SOS -------------------------------------------------------------------------------------

LIFECYCLE = SOS_SD + "sos-entry-lifecycle"
FEE = SOS_SD + "sos-announced-fee"
DELAY = SOS_SD + "sos-appointment-delay"
DEPARTEMENT = SOS_SD + "sos-departement"
DEPARTEMENT_SYSTEM = tre("G09-DepartementOM")
SEARCH_CHAIN = SOS_SD + "sos-search-chain"
DIRECTORY_TYPES = ["HealthcareService", "Organization", "Location", "PractitionerRole"]
AXES = [
    # slice name, CodeSystem/ValueSet id, search code, French label, minimum
    ("audience", "sos-audience", "audience", "Public concerné", 1),
    ("ageGroup", "sos-age-group", "age-group", "Tranche d'âge", 0),
    ("carePlace", "sos-care-place", "care-place", "Lieu de prise en charge", 0),
    ("carePhase", "sos-care-phase", "care-phase", "Phase de prise en charge", 0),
    ("accessMode", "sos-access-mode", "access-mode", "Modalité d'accès", 0),
    ("pathway", "sos-pathway", "pathway", "Parcours spécifique", 0),
]


def sos_extensions() -> list[dict[str, Any]]:
    lifecycle = complex_extension(
        "sos-entry-lifecycle",
        LIFECYCLE,
        "SOSEntryLifecycle",
        "Cycle de vie d'une entrée de l'annuaire : statut, date de dernière vérification annuelle, "
        "validation territoriale ou régionale.",
        DIRECTORY_TYPES,
        [
            ("status", "1..1", ["code"], sos_vs("sos-entry-status")),
            ("lastVerified", "0..1", ["date"], None),
            ("validatedBy", "0..*", ["Reference", "string"], None),
            # The inclusion procedure's record (fhirsrv/workflow): when the status last changed
            # and why, who validated at each level and when, the yearly verification's request.
            ("statusDate", "0..1", ["dateTime"], None),
            ("statusReason", "0..1", ["string"], None),
            ("applicationConfirmed", "0..1", ["dateTime"], None),
            ("territoryValidatedBy", "0..1", ["string"], None),
            ("territoryValidatedOn", "0..1", ["dateTime"], None),
            ("regionValidatedBy", "0..1", ["string"], None),
            ("regionValidatedOn", "0..1", ["dateTime"], None),
            ("verificationRequested", "0..1", ["date"], None),
        ],
    )
    fee = complex_extension(
        "sos-announced-fee",
        FEE,
        "SOSAnnouncedFee",
        "Tarif annoncé de l'offre et reste à charge pour le patient (charte de l'annuaire).",
        ["HealthcareService"],
        [
            ("amount", "0..1", ["Money"], None),
            ("outOfPocket", "0..1", ["boolean"], None),
            ("description", "0..1", ["string"], None),
        ],
    )
    fee["differential"]["element"][0]["constraint"] = [
        {
            "key": "sos-fee-1",
            "severity": "error",
            "human": "Un tarif annoncé donne un montant, un reste à charge ou une description",
            "expression": "extension('amount').exists() or extension('outOfPocket').exists() "
            "or extension('description').exists()",
        }
    ]
    delay = simple_extension(
        "sos-appointment-delay",
        DELAY,
        "SOSAppointmentDelay",
        "Délai habituel d'obtention d'un rendez-vous (la charte vise un mois au plus).",
        ["HealthcareService"],
        "Duration",
    )
    delay["differential"]["element"][-1:-1] = [
        el("Extension.value[x].value", card="1..1"),
        el("Extension.value[x].system", fixedUri="http://unitsofmeasure.org"),
        el("Extension.value[x].code", card="1..1", binding=binding(sos_vs("sos-delay-unit"))),
    ]
    departement = simple_extension(
        "sos-departement",
        DEPARTEMENT,
        "SOSDepartement",
        "Département (code officiel géographique INSEE) d'une adresse, pour la recherche par département.",
        ["Address"],
        "Coding",
    )
    departement["differential"]["element"][-1:-1] = [
        el("Extension.value[x].system", card="1..1", fixedUri=DEPARTEMENT_SYSTEM),
        el("Extension.value[x].code", card="1..1"),
    ]
    search_chain = simple_extension(
        "sos-search-chain",
        SEARCH_CHAIN,
        "SOSSearchChain",
        "Le chaînage qu'un paramètre de recherche abrège (ex. location.departement) : fhirsrv le "
        "recherche ainsi, dans la ressource référencée telle qu'elle est au moment de la recherche.",
        ["SearchParameter"],
        "string",
    )
    return [lifecycle, fee, delay, departement, search_chain]


def sos_delay_units() -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": "sos-delay-unit",
        "url": sos_vs("sos-delay-unit"),
        "name": "SOSDelayUnit",
        "title": "Unités d'un délai de rendez-vous",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "http://unitsofmeasure.org",
                    "concept": [
                        {"code": "d", "display": "jour(s)"},
                        {"code": "wk", "display": "semaine(s)"},
                        {"code": "mo", "display": "mois"},
                    ],
                }
            ]
        },
    }


def sos_healthcareservice() -> dict[str, Any]:
    hs = "HealthcareService"
    ch = f"{hs}.characteristic"
    elements = [
        el(
            hs,
            constraint=[
                {
                    "key": "sos-hcs-1",
                    "severity": "error",
                    "human": "Une offre se contacte au moins par téléphone ou par courriel",
                    "expression": "telecom.where(system = 'phone' or system = 'email').exists()",
                }
            ],
        ),
        *extension_slices(
            f"{hs}.extension",
            [
                ("announcedFee", FEE, "0..1"),
                ("appointmentDelay", DELAY, "0..1"),
                ("entryLifecycle", LIFECYCLE, "0..1"),
            ],
        ),
        el(f"{hs}.providedBy", card="1..1"),
        el(f"{hs}.specialty"),
        *coded_slice(f"{hs}.specialty", "sosService", "1..*", sos_cs("sos-category"), sos_vs("sos-category")),
        el(f"{hs}.location", card="1..*"),
        el(f"{hs}.telecom", card="1..*"),
        el(ch),
    ]
    for slice_name, term, _code, _label, minimum in AXES:
        elements += coded_slice(ch, slice_name, f"{minimum}..*", sos_cs(term), sos_vs(term))
        elements.append(el(f"{ch}:{slice_name}.extension:ror-act-type", card="0..0"))
    return profile(
        "sos-healthcareservice",
        SOS_SD + "sos-healthcareservice",
        "SOSHealthcareService",
        "Offre de soins oncologiques de support",
        ROR_SD + "ror-healthcareservice",
        hs,
        "Une offre de soins oncologiques de support de l'annuaire régional : une offre ROR qui dit en plus "
        "quel(s) soin(s) du catalogue SOS elle propose, à qui, où, à quelle phase et selon quelles modalités.",
        elements,
    )


def sos_organization() -> dict[str, Any]:
    org = "Organization"
    elements = [
        *extension_slices(f"{org}.extension", [("entryLifecycle", LIFECYCLE, "0..1")]),
        el(f"{org}.active", card="1..1"),
        el(f"{org}.type", card="1..*", slicing=by_value("coding.system")),
        *coded_slice(
            f"{org}.type", "structureType", "1..1", sos_cs("sos-structure-type"), sos_vs("sos-structure-type")
        ),
        el(f"{org}.name", card="1..1"),
        el(f"{org}.identifier:finess.system", card="1..1", fixedUri="http://finess.esante.gouv.fr"),
        el(f"{org}.identifier:sirene.system", card="1..1", fixedUri="http://sirene.fr"),
        el(f"{org}.contact", card="1..*"),
        el(f"{org}.contact.name", card="1..1"),
    ]
    return profile(
        "sos-organization",
        SOS_SD + "sos-organization",
        "SOSOrganization",
        "Structure de l'annuaire SOS",
        ROR_SD + "ror-organization",
        org,
        "Une structure inscrite à l'annuaire (établissement, association, MSP, CPTS…) : son type SOS, ses "
        "identifiants nationaux (FINESS, SIREN, SIRET) et sa personne référente.",
        elements,
    )


def sos_location() -> dict[str, Any]:
    loc = "Location"
    elements = [
        el(f"{loc}.status", card="1..1"),
        el(f"{loc}.address", card="1..1"),
        *extension_slices(f"{loc}.address.extension", [("departement", DEPARTEMENT, "0..1")]),
        el(f"{loc}.address.city", card="1..1"),
        el(f"{loc}.address.postalCode", card="1..1"),
        el(f"{loc}.position", card="1..1"),
        el(
            f"{loc}.position.latitude",
            constraint=[
                {
                    "key": "sos-loc-1",
                    "severity": "error",
                    "human": "La latitude est comprise entre -90 et 90",
                    "expression": "$this >= -90 and $this <= 90",
                }
            ],
        ),
        el(
            f"{loc}.position.longitude",
            constraint=[
                {
                    "key": "sos-loc-2",
                    "severity": "error",
                    "human": "La longitude est comprise entre -180 et 180",
                    "expression": "$this >= -180 and $this <= 180",
                }
            ],
        ),
    ]
    return profile(
        "sos-location",
        SOS_SD + "sos-location",
        "SOSLocation",
        "Lieu de réalisation d'une offre SOS",
        ROR_SD + "ror-location",
        loc,
        "Un lieu où l'offre est réalisée : adresse avec code postal et département, coordonnées pour la "
        "carte et la recherche par distance.",
        elements,
    )


def sos_practitionerrole() -> dict[str, Any]:
    pr = "PractitionerRole"
    elements = [
        *extension_slices(f"{pr}.extension", [("entryLifecycle", LIFECYCLE, "0..1")]),
        el(f"{pr}.organization", card="1..1"),
    ]
    return profile(
        "sos-practitionerrole",
        SOS_SD + "sos-practitionerrole",
        "SOSPractitionerRole",
        "Personne référente ou contact d'une offre SOS",
        ROR_SD + "ror-practitionerrole",
        pr,
        "La personne référente d'une structure ou le contact d'une offre, toujours rattaché à sa structure.",
        elements,
    )


def sos_endpoint() -> dict[str, Any]:
    ep = "Endpoint"
    elements = [
        el(
            ep,
            constraint=[
                {
                    "key": "sos-ep-1",
                    "severity": "error",
                    "human": "Une adresse de messagerie sécurisée est une URI mailto:",
                    "expression": "address.startsWith('mailto:') and address.contains('@')",
                }
            ],
        ),
        el(
            f"{ep}.connectionType",
            patternCoding={
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "secure-email",
            },
        ),
        el(f"{ep}.managingOrganization", card="1..1"),
    ]
    return profile(
        "sos-endpoint",
        SOS_SD + "sos-endpoint",
        "SOSEndpoint",
        "Messagerie sécurisée de santé (MSSanté)",
        CORE_SD + "Endpoint",
        ep,
        "La boîte aux lettres MSSanté d'une structure ou d'une offre, pour adresser un patient.",
        elements,
    )


# -- SearchParameters ------------------------------------------------------------------------


def search_parameter(
    sp_id: str,
    url: str,
    code: str,
    base: list[str],
    sp_type: str,
    expression: str,
    description: str,
    **kw: Any,
) -> dict[str, Any]:
    sp = {
        "resourceType": "SearchParameter",
        "id": sp_id,
        "url": url,
        "version": "0.1.0",
        "name": sp_id.replace("-", "_"),
        "status": "active",
        "description": description,
        "code": code,
        "base": base,
        "type": sp_type,
        "expression": expression,
    }
    sp.update(kw)
    return sp


def sos_search_parameters() -> list[dict[str, Any]]:
    sp_base = f"{SOS}/SearchParameter/"
    lifecycle = f"extension('{LIFECYCLE}')"
    params = [
        search_parameter(
            "healthcareservice-sos-category",
            sp_base + "healthcareservice-sos-category",
            "sos-category",
            ["HealthcareService"],
            "token",
            f"HealthcareService.specialty.coding.where(system = '{sos_cs('sos-category')}')",
            "Soin de support proposé (catégorie ou soin précis du catalogue SOS) ; :below trouve les soins "
            "d'une catégorie.",
            modifier=["below", "above", "in", "not-in", "text", "not"],
        )
    ]
    for _slice, term, code, label, _min in AXES:
        params.append(
            search_parameter(
                f"healthcareservice-{code}",
                sp_base + f"healthcareservice-{code}",
                code,
                ["HealthcareService"],
                "token",
                f"HealthcareService.characteristic.coding.where(system = '{sos_cs(term)}')",
                f"{label} de l'offre (axe de recherche de l'annuaire SOS).",
                modifier=["in", "not-in", "not"],
            )
        )
    departement = f"extension('{DEPARTEMENT}').value.code"
    for res in ("Location", "Organization"):
        params.append(
            search_parameter(
                f"{res.lower()}-departement",
                sp_base + f"{res.lower()}-departement",
                "departement",
                [res],
                "token",
                f"{res}.address.{departement} | {res}.address.where({departement}.empty()).postalCode.substring(0, 2)",
                "Département (code INSEE) de l'adresse ; à défaut, les deux premiers chiffres du code postal. "
                "Sur HealthcareService : location.departement ou organization.departement (chaînage).",
            )
        )
    # On the offer: the département of its places, read from each Location when searching (a
    # copy indexed with the offer would go stale when a Location moves).
    params.append(
        search_parameter(
            "healthcareservice-departement",
            sp_base + "healthcareservice-departement",
            "departement",
            ["HealthcareService"],
            "token",
            " | ".join(
                f"HealthcareService.location.resolve().address{where}"
                for where in (f".{departement}", f".where({departement}.empty()).postalCode.substring(0, 2)")
            ),
            "Département (code INSEE) des lieux de l'offre : le paramètre departement de ses Location "
            "(chaînage location.departement).",
            extension=[{"url": SEARCH_CHAIN, "valueString": "location.departement"}],
        )
    )
    params += [
        search_parameter(
            "directory-entry-status",
            sp_base + "directory-entry-status",
            "entry-status",
            DIRECTORY_TYPES,
            "token",
            " | ".join(f"{t}.{lifecycle}.extension('status').value" for t in DIRECTORY_TYPES),
            "Statut de l'entrée dans le circuit de validation (brouillon, soumise, validée, publiée, radiée…).",
        ),
        search_parameter(
            "directory-last-verified",
            sp_base + "directory-last-verified",
            "last-verified",
            DIRECTORY_TYPES,
            "date",
            " | ".join(f"{t}.{lifecycle}.extension('lastVerified').value" for t in DIRECTORY_TYPES),
            "Date de la dernière vérification annuelle de l'entrée.",
            comparator=["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"],
        ),
        search_parameter(
            "healthcareservice-appointment-delay",
            sp_base + "healthcareservice-appointment-delay",
            "appointment-delay",
            ["HealthcareService"],
            "quantity",
            f"HealthcareService.extension('{DELAY}').value",
            "Délai habituel d'obtention d'un rendez-vous (ex. le 1|http://unitsofmeasure.org|mo).",
            comparator=["eq", "ne", "gt", "lt", "ge", "le", "ap"],
        ),
        search_parameter(
            "organization-structure-type",
            sp_base + "organization-structure-type",
            "structure-type",
            ["Organization"],
            "token",
            f"Organization.type.coding.where(system = '{sos_cs('sos-structure-type')}')",
            "Type de structure SOS (établissement autorisé, association, MSP, CPTS…).",
        ),
    ]
    return params


def ror_search_parameters() -> list[dict[str, Any]]:
    patient_type = f"HealthcareService.extension('{ROR_SD}ror-healthcareservice-patient-type')"
    territorial = f"extension('{ROR_SD}ror-territorial-division')"
    comparators = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
    return [
        search_parameter(
            "ror-sp-healthcareservice-age-range-low",
            ROR_SP + "ror-sp-healthcareservice-age-range-low",
            "age-range-low",
            ["HealthcareService"],
            "quantity",
            f"{patient_type}.extension('ageRange').value.low",
            "Âge minimum (inclus) de la patientèle (ROR).",
            comparator=comparators,
        ),
        search_parameter(
            "ror-sp-healthcareservice-age-range-high",
            ROR_SP + "ror-sp-healthcareservice-age-range-high",
            "age-range-high",
            ["HealthcareService"],
            "quantity",
            f"{patient_type}.extension('ageRange').value.high",
            "Âge maximum (inclus) de la patientèle (ROR).",
            comparator=comparators,
        ),
        search_parameter(
            "ror-sp-healthcareservice-patient-type",
            ROR_SP + "ror-sp-healthcareservice-patient-type",
            "patient-type",
            ["HealthcareService"],
            "token",
            f"{patient_type}.extension('supportedPatientInfo').value",
            "Public pris en charge (JDV_J29, ROR).",
        ),
        search_parameter(
            "ror-sp-healthcareservice-intervention-zone",
            ROR_SP + "ror-sp-healthcareservice-intervention-zone",
            "intervention-zone",
            ["HealthcareService"],
            "token",
            f"HealthcareService.{territorial}.extension('codeTerritorialDivision').value",
            "Zone d'intervention : code des divisions territoriales desservies (ROR).",
        ),
        search_parameter(
            "ror-sp-healthcareservice-psychiatric-sector",
            ROR_SP + "ror-sp-healthcareservice-psychiatric-sector",
            "psychiatric-sector",
            ["HealthcareService"],
            "token",
            f"HealthcareService.extension('{ROR_SD}ror-healthcareservice-psychiatric-sector').value",
            "Secteur psychiatrique (ROR).",
        ),
        search_parameter(
            "ror-sp-location-commune-cog",
            ROR_SP + "ror-sp-location-commune-cog",
            "commune-cog",
            ["Location"],
            "token",
            f"Location.extension('{ROR_SD}ror-commune-cog').value",
            "Code officiel géographique (INSEE) de la commune du lieu (ROR).",
        ),
        search_parameter(
            "ror-sp-location-near-insee-code",
            ROR_SP + "ror-sp-location-near-insee-code",
            "near-insee-code",
            ["Location"],
            "special",
            "Location.position",
            "Lieux proches d'une commune : near-insee-code=code INSEE|distance|unité (ex. 29019|15|km) ; "
            "la distance est mesurée depuis la mairie de la commune jusqu'à la position du lieu (ROR, "
            "qui la mesure de commune à commune).",
        ),
        search_parameter(
            "ror-sp-organization-closing-type",
            ROR_SP + "ror-sp-organization-closing-type",
            "closing-type",
            ["Organization"],
            "token",
            f"Organization.extension('{ROR_SD}ror-organization-closing-type').value",
            "Type de fermeture de la structure (ROR).",
        ),
        search_parameter(
            "ror-sp-organization-drop-zone",
            ROR_SP + "ror-sp-organization-drop-zone",
            "drop-zone",
            ["Organization"],
            "token",
            f"Organization.extension('{ROR_SD}ror-organization-drop-zone').value",
            "Existence d'une zone de poser pour hélicoptère (ROR).",
        ),
        search_parameter(
            "ror-sp-organization-period-end",
            ROR_SP + "ror-sp-organization-period-end",
            "period-end",
            ["Organization"],
            "date",
            f"Organization.extension('{CORE_SD}organization-period').value.end",
            "Date de fermeture de la structure (ROR).",
            comparator=comparators,
        ),
        search_parameter(
            "ror-sp-location-equipment-type",
            ROR_SP + "ror-sp-location-equipment-type",
            "equipment-type",
            ["Location"],
            "token",
            f"Location.extension('{ROR_SD}ror-location-equipment').extension('equipmentType').value",
            "Type d'équipement spécifique du lieu (ROR).",
        ),
    ]


def _write(folder: Path, resources: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for res in resources:
        path = folder / f"{res['resourceType']}-{res['id']}.json"
        path.write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    ror = [ror_healthcareservice(), ror_organization(), ror_location(), ror_practitionerrole()]
    _write(HERE / "ror", ror + ror_extensions() + ror_act_type_terminology() + ror_search_parameters())
    sos = [
        sos_healthcareservice(),
        sos_organization(),
        sos_location(),
        sos_practitionerrole(),
        sos_endpoint(),
    ]
    _write(HERE / "sos", sos + sos_extensions() + [sos_delay_units()] + sos_search_parameters())


if __name__ == "__main__":
    main()
