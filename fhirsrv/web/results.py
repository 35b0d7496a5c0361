"""What a page shows of an offer or a structure, taken from the FHIR resources as served.

Plain data for the templates: the templates never dig into FHIR JSON, and what a person reads
(a phone number, an address, opening hours, a fee) is chosen here, once, for the result list,
the offer page and the structure page alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhirsrv.web.i18n import Texts
from fhirsrv.web.labels import AXES, CATEGORY, STRUCTURE_TYPE, Vocabulary, name_of

DISTANCE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/location-distance"
FEE_EXTENSION = "sos-announced-fee"
DELAY_EXTENSION = "sos-appointment-delay"
DAY_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SECURE_MESSAGING = "secure-email"


@dataclass
class Place:
    id: str
    name: str
    lines: list[str]
    lat: float | None
    lon: float | None


@dataclass
class Structure:
    id: str
    name: str
    listed: bool
    types: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Offer:
    id: str
    name: str
    listed: bool
    description: str
    structure: Structure | None
    places: list[Place]
    distance_km: float | None
    categories: list[str]
    audience: list[str]
    access: list[str]
    phones: list[str]
    emails: list[str]
    secure_messaging: list[str]
    fee: str | None
    delay: str | None
    hours: list[str]
    languages: list[str]


class Shaper:
    """Turns resources into Offers and Structures for one language."""

    def __init__(self, vocabulary: Vocabulary, texts: Texts) -> None:
        self.vocabulary = vocabulary
        self.texts = texts

    # ------------------------------------------------------------------------- structures

    def structure(self, org: dict[str, Any], listed: bool | None = None) -> Structure:
        return Structure(
            id=org["id"],
            name=org.get("name") or org["id"],
            listed=org.get("active", True) is not False if listed is None else listed,
            types=self._labels(org.get("type"), STRUCTURE_TYPE),
            phones=_telecom(org, "phone"),
            emails=_telecom(org, "email"),
            identifiers=[
                (_identifier_kind(i), i["value"]) for i in org.get("identifier") or [] if i.get("value")
            ],
        )

    def place(self, loc: dict[str, Any]) -> Place:
        address = loc.get("address") or {}
        town = " ".join(p for p in (address.get("postalCode"), address.get("city")) if p)
        position = loc.get("position") or {}
        return Place(
            id=loc["id"],
            name=loc.get("name") or "",
            lines=[*(address.get("line") or []), *([town] if town else [])],
            lat=position.get("latitude"),
            lon=position.get("longitude"),
        )

    # ----------------------------------------------------------------------------- offers

    def offer(
        self,
        hs: dict[str, Any],
        included: dict[str, dict[str, Any]],
        distance_km: float | None = None,
        listed: bool | None = None,
    ) -> Offer:
        org = included.get((hs.get("providedBy") or {}).get("reference", ""))
        structure = self.structure(org) if org else None
        places = [
            self.place(included[ref["reference"]])
            for ref in hs.get("location") or []
            if ref.get("reference") in included
        ]
        endpoints = [included[r["reference"]] for r in hs.get("endpoint") or [] if r.get("reference") in included]
        phones = _telecom(hs, "phone") or (structure.phones if structure else [])
        emails = _telecom(hs, "email") or (structure.emails if structure else [])
        access = [self.vocabulary.label(AXES["acces"][1], c, self.texts.language) for c in self._codes(hs, "acces")]
        if hs.get("appointmentRequired"):
            access.append(self.texts("offer.appointment"))
        return Offer(
            id=hs["id"],
            name=hs.get("name") or hs["id"],
            listed=hs.get("active", True) is not False if listed is None else listed,
            description=hs.get("comment") or "",
            structure=structure,
            places=places,
            distance_km=distance_km,
            categories=self._labels(hs.get("specialty"), CATEGORY),
            audience=[
                self.vocabulary.label(AXES["public"][1], c, self.texts.language) for c in self._codes(hs, "public")
            ],
            access=access,
            phones=phones,
            emails=emails,
            secure_messaging=[
                e["address"].removeprefix("mailto:")
                for e in endpoints
                if (e.get("connectionType") or {}).get("code") == SECURE_MESSAGING and e.get("address")
            ],
            fee=self._fee(hs),
            delay=self._delay(hs),
            hours=self._hours(hs),
            languages=[
                c.get("display") or c.get("code", "")
                for cc in hs.get("communication") or []
                for c in cc.get("coding") or []
            ],
        )

    def search_results(self, bundle: dict[str, Any]) -> list[Offer]:
        entries = bundle.get("entry") or []
        included = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
            for e in entries
            if e.get("search", {}).get("mode") == "include"
        }
        return [
            self.offer(e["resource"], included, _distance(e))
            for e in entries
            if e.get("search", {}).get("mode") == "match"
        ]

    # --------------------------------------------------------------------------- details

    def _codes(self, hs: dict[str, Any], axis: str) -> list[str]:
        system = AXES[axis][1]
        return [
            c["code"]
            for cc in hs.get("characteristic") or []
            for c in cc.get("coding") or []
            if name_of(c.get("system", "")) == system and c.get("code")
        ]

    def _labels(self, concepts: list[dict[str, Any]] | None, system: str) -> list[str]:
        return [
            self.vocabulary.label(system, c["code"], self.texts.language)
            for cc in concepts or []
            for c in cc.get("coding") or []
            if name_of(c.get("system", "")) == system and c.get("code")
        ]

    def _fee(self, hs: dict[str, Any]) -> str | None:
        fee = _extension(hs, FEE_EXTENSION)
        if fee is None:
            return None
        parts = {p.get("url"): p for p in fee.get("extension") or []}
        shown = []
        amount = (parts.get("amount") or {}).get("valueMoney")
        if amount and amount.get("value") is not None:
            value = amount["value"]
            shown.append(self.texts("offer.fee_free") if value == 0 else f"{self.texts.number(value)} €")
        description = (parts.get("description") or {}).get("valueString")
        if description:
            shown.append(description)
        return " — ".join(shown) or None

    def _delay(self, hs: dict[str, Any]) -> str | None:
        delay = _extension(hs, DELAY_EXTENSION)
        duration = (delay or {}).get("valueDuration") or {}
        if duration.get("value") is None:
            return None
        unit_key = f"units.{duration.get('code', 'd')}"
        try:
            unit = self.texts(unit_key)
        except KeyError:
            unit = duration.get("unit") or duration.get("code") or ""
        value = duration["value"]
        return self.texts("offer.delay_value", value=int(value) if float(value).is_integer() else value, unit=unit)

    def _hours(self, hs: dict[str, Any]) -> list[str]:
        shown = []
        for slot in hs.get("availableTime") or []:
            days = [d for d in DAY_ORDER if d in (slot.get("daysOfWeek") or [])]
            named = ", ".join(self.texts(f"days.{d}") for d in days)
            if slot.get("allDay"):
                shown.append(self.texts("hours.all_day", days=named))
            elif slot.get("availableStartTime") and slot.get("availableEndTime"):
                start, end = slot["availableStartTime"][:5], slot["availableEndTime"][:5]
                shown.append(self.texts("hours.range", days=named, start=start, end=end))
        if hs.get("availabilityExceptions"):
            shown.append(hs["availabilityExceptions"])
        return shown


def _telecom(resource: dict[str, Any], system: str) -> list[str]:
    return [t["value"] for t in resource.get("telecom") or [] if t.get("system") == system and t.get("value")]


def _extension(resource: dict[str, Any], name: str) -> dict[str, Any] | None:
    for ext in resource.get("extension") or []:
        if name_of(ext.get("url", "")) == name:
            return ext
    return None


def _distance(entry: dict[str, Any]) -> float | None:
    for ext in entry.get("search", {}).get("extension") or []:
        if ext.get("url") == DISTANCE_EXTENSION:
            return ext.get("valueDistance", {}).get("value")
    return None


def _identifier_kind(identifier: dict[str, Any]) -> str:
    for coding in (identifier.get("type") or {}).get("coding") or []:
        if coding.get("display"):
            return coding["display"]
    system = identifier.get("system", "")
    if "finess" in system.lower():
        return "FINESS"
    return system.rstrip("/").rsplit("/", 1)[-1] or "id"
