"""Plain descriptions of a structure and its offers, before they become FHIR resources.

Drawing (random, shape-driven) and rendering (FHIR shapes) are kept apart: the demo builder and
the generator draw structures the same way, and only `resources` knows what the JSON looks like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    name_of: str  # "de Rennes", "d'Orly", "du Kremlin-Bicêtre": for names built on the commune
    departement: str
    postal_code: str
    lat: float
    lon: float
    population: int


@dataclass(frozen=True)
class Site:
    """A place where the structure receives people (a Location)."""

    name: str
    commune: Commune
    line: str


@dataclass(frozen=True)
class Person:
    given: str
    family: str
    prefix: str | None = None


@dataclass(frozen=True)
class Lifecycle:
    """Where the entry stands in the validation workflow (sos-entry-lifecycle)."""

    status: str
    last_verified: date | None = None
    validated_by_reference: str | None = None
    validated_by_text: str | None = None
    # The procedure's record (fhirsrv/workflow): when the status last changed and why, when each
    # level validated, when the yearly verification was asked for.
    status_date: date | None = None
    status_reason: str | None = None
    territory_validated_on: date | None = None
    region_validated_on: date | None = None
    verification_requested: date | None = None


@dataclass(frozen=True)
class Hours:
    days: tuple[str, ...]
    start: str | None = None
    end: str | None = None
    all_day: bool = False


@dataclass
class Service:
    """One SOS category offered by a structure (one HealthcareService)."""

    category: str
    children: list[str]
    care_mode: str
    activity: str
    champ: str
    offer_type: str | None = None
    audiences: list[str] = field(default_factory=list)
    age_groups: list[str] = field(default_factory=list)
    care_places: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    access_modes: list[str] = field(default_factory=list)
    pathways: list[str] = field(default_factory=list)
    delivery_modes: list[str] = field(default_factory=list)
    hours: list[Hours] = field(default_factory=list)
    site: int = 0
    phone: str = ""


@dataclass
class Structure:
    """A structure listed in the directory, with everything that is rendered for it."""

    key: str  # "<département>-<number>", the suffix of every id of the structure
    type: str
    name: str
    departement: str
    identifiers: list[tuple[str, str]]
    sites: list[Site]
    services: list[Service]
    referent: Person
    referent_phone: str
    referent_email: str
    phone: str
    email: str
    mssante: str
    lifecycle: Lifecycle
    created: date  # when the entry was created (ROR ror-meta-creation-date)
    referent_profession: str  # NOS TRE_G15 profession code (the ROR requires one on a role)
    referent_exercise_mode: str  # NOS TRE_R23 mode d'exercice: S salaried, L liberal, B volunteer
    part_of: str | None = None  # key of the parent structure
