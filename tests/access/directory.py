"""A directory with structures in every lifecycle state, what belongs to each, clients of every
role, and an oracle written from the README's rule ("Who sees what") — not from the code.

Used by the table-driven tests of every read and write path (test_read_paths.py,
test_write_paths.py), on SQLite and PostgreSQL, under a non-default canonical base: the
policy must find the lifecycle extension wherever the deployment publishes its profiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions import writes

# Not the shipped default (https://sos.example.org/fhir): literals in the code would miss it.
CANONICAL = "https://annuaire.sos-region.test/fhir"
LIFECYCLE = f"{CANONICAL}/StructureDefinition/sos-entry-lifecycle"
FHIR = "application/fhir+json"
STATUSES = (
    "draft",
    "submitted",
    "territorial-validated",
    "published",
    "verification-pending",
    "delisted",
    "withdrawn",
    "rejected",
)
PUBLIC = {"published", "verification-pending"}
RETIRED = {"delisted", "withdrawn"}
CITEABLE = {"Organization", "HealthcareService", "Location"}
OFFER_KIND = "https://example.org/fhir/CodeSystem/test-offer-kind"
GOVERNED = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Endpoint", "Practitioner")
# Where the fixture's Subscriptions would notify (an allowed origin: never resolved here).
RECEIVER = "https://receiver.example.org"
SERVER_SUBSCRIPTION = "server"  # the name of the Subscription the server itself wrote


def lifecycle(status: str, *, published_on: str | None = None) -> list[dict[str, Any]]:
    """The lifecycle record; `published_on`: the day the region published it (a listed past)."""
    parts: list[dict[str, Any]] = [{"url": "status", "valueCode": status}]
    if published_on:
        parts.append({"url": "regionValidatedOn", "valueDateTime": f"{published_on}T09:00:00Z"})
    return [{"url": LIFECYCLE, "extension": parts}]


@dataclass
class Entry:
    """One resource of the fixture and what the oracle needs to know of it."""

    res_type: str
    res_id: str
    body: dict[str, Any]
    structure: str | None = None  # Organization id
    own_status: str | None = None
    roles: list[str] = field(default_factory=list)  # for a Practitioner: its roles' ids
    published_once: bool = False  # its record shows the region's publication

    @property
    def listed_once(self) -> bool:
        """Shown to every reader once: delisted, or published by the region (its record)."""
        return self.own_status == "delisted" or self.published_once

    @property
    def key(self) -> str:
        return f"{self.res_type}/{self.res_id}"


def _rank(entry: Entry, absent: int) -> int:
    """0 public, 1 retired (left the directory after being listed), 2 hidden: by its own status.
    A withdrawn application never listed was never shown: hidden, not retired."""
    status = entry.own_status
    if status is None:
        return absent
    return 0 if status in PUBLIC else 1 if status in RETIRED and entry.listed_once else 2


def build_entries() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}

    def add(entry: Entry) -> None:
        entries[entry.key] = entry

    structures = [(f"o29-{s}", "29", s, False) for s in STATUSES] + [
        ("o35-published", "35", "published", False),
        ("o35-draft", "35", "draft", False),
        # Withdrawn after the region had published it (o29-withdrawn: an application withdrawn before).
        ("o29-left", "29", "withdrawn", True),
    ]
    for org_id, dep, status, published_once in structures:
        add(
            Entry(
                "Organization",
                org_id,
                {
                    "resourceType": "Organization",
                    "id": org_id,
                    "extension": lifecycle(status, published_on="2025-03-01" if published_once else None),
                    "name": f"Structure {org_id}",
                    "address": [{"city": "Ville", "postalCode": f"{dep}000"}],
                },
                org_id,
                status,
                published_once=published_once,
            )
        )
        owner = {"reference": f"Organization/{org_id}"}
        add(
            Entry(
                "Location",
                f"loc-{org_id}",
                {"resourceType": "Location", "id": f"loc-{org_id}", "name": f"Site {org_id}", "managingOrganization": owner},
                org_id,
            )
        )
        add(
            Entry(
                "HealthcareService",
                f"hs-{org_id}",
                {
                    "resourceType": "HealthcareService",
                    "id": f"hs-{org_id}",
                    "extension": lifecycle("published"),
                    "name": f"Offre {org_id}",
                    # One code for every offer: a `system|code` search alone takes the token
                    # index's own path (search/walk.py), which must check visibility too.
                    "type": [{"coding": [{"system": OFFER_KIND, "code": "offer"}]}],
                    "providedBy": owner,
                    "location": [{"reference": f"Location/loc-{org_id}"}],
                },
                org_id,
                "published",
            )
        )
        add(
            Entry(
                "Practitioner",
                f"p-{org_id}",
                {
                    "resourceType": "Practitioner",
                    "id": f"p-{org_id}",
                    "name": [{"family": f"Personne {org_id}"}],
                    "telecom": [{"system": "email", "value": f"p-{org_id}@example.org"}],
                },
                roles=[f"role-{org_id}"],
            )
        )
        add(
            Entry(
                "PractitionerRole",
                f"role-{org_id}",
                {
                    "resourceType": "PractitionerRole",
                    "id": f"role-{org_id}",
                    "organization": owner,
                    "practitioner": {"reference": f"Practitioner/p-{org_id}"},
                },
                org_id,
            )
        )
        add(
            Entry(
                "Endpoint",
                f"ep-{org_id}",
                {
                    "resourceType": "Endpoint",
                    "id": f"ep-{org_id}",
                    "status": "active",
                    "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "direct-project"},
                    "payloadType": [{"text": "messagerie sécurisée"}],
                    "address": f"mailto:contact-{org_id}@mssante.example",
                    "managingOrganization": owner,
                },
                org_id,
            )
        )
    # Offers delisted, withdrawn or in draft on their own, in a listed structure: withdrawn
    # once listed (its record holds the publication) or before it ever was.
    for own, published_once in (("draft", False), ("delisted", False), ("withdrawn", False), ("withdrawn", True)):
        sid = f"hs-o29-published-{'left' if own == 'withdrawn' and published_once else own}"
        add(
            Entry(
                "HealthcareService",
                sid,
                {
                    "resourceType": "HealthcareService",
                    "id": sid,
                    "extension": lifecycle(own, published_on="2025-03-01" if published_once else None),
                    "name": f"Offre propre {sid.removeprefix('hs-o29-published-')}",
                    "type": [{"coding": [{"system": OFFER_KIND, "code": "offer"}]}],
                    "providedBy": {"reference": "Organization/o29-published"},
                },
                "o29-published",
                own,
                published_once=published_once,
            )
        )
    # A person with a public role and a hidden one; a person with no role at all.
    add(
        Entry(
            "PractitionerRole",
            "role-shared-draft",
            {
                "resourceType": "PractitionerRole",
                "id": "role-shared-draft",
                "organization": {"reference": "Organization/o35-draft"},
                "practitioner": {"reference": "Practitioner/p-shared"},
            },
            "o35-draft",
        )
    )
    add(
        Entry(
            "PractitionerRole",
            "role-shared-published",
            {
                "resourceType": "PractitionerRole",
                "id": "role-shared-published",
                "organization": {"reference": "Organization/o29-published"},
                "practitioner": {"reference": "Practitioner/p-shared"},
            },
            "o29-published",
        )
    )
    add(
        Entry(
            "Practitioner",
            "p-shared",
            {"resourceType": "Practitioner", "id": "p-shared", "name": [{"family": "Partagée"}]},
            roles=["role-shared-draft", "role-shared-published"],
        )
    )
    add(Entry("Practitioner", "p-alone", {"resourceType": "Practitioner", "id": "p-alone", "name": [{"family": "Seule"}]}))
    return entries


ENTRIES = build_entries()
DEPARTEMENT = {e.res_id: e.body["address"][0]["postalCode"][:2] for e in ENTRIES.values() if e.res_type == "Organization"}


def visibility(entry: Entry) -> int:
    """0 public, 1 retired, 2 hidden: the stricter of the entry's status and its structure's."""
    if entry.res_type == "Practitioner":
        return min((visibility(ENTRIES[f"PractitionerRole/{r}"]) for r in entry.roles), default=2)
    structure = ENTRIES[f"Organization/{entry.structure}"]
    org_rank = _rank(structure, absent=2)
    if entry.res_type == "Organization":
        return org_rank
    return max(_rank(entry, absent=0), org_rank)


@dataclass(frozen=True)
class Who:
    """A principal of the table: its role and perimeter, and the scopes of its token."""

    name: str
    role: str | None  # None: anonymous
    scopes: str = "system/*.cruds"
    departements: tuple[str, ...] = ()
    organization: str | None = None

    def may(self, res_type: str, interaction: str) -> bool:
        if self.role is None:
            return interaction in "rs"
        letters = self.scopes.split("/")[1].split(".")
        return letters[0] in ("*", res_type) and interaction in letters[1].replace("*", "cruds")

    def in_perimeter(self, entry: Entry) -> bool:
        if entry.res_type == "Practitioner":
            return any(self.in_perimeter(ENTRIES[f"PractitionerRole/{r}"]) for r in entry.roles)
        if self.role == "structure-referent":
            return f"Organization/{entry.structure}" == self.organization
        if self.role == "territorial-admin":
            return DEPARTEMENT[entry.structure or ""] in self.departements
        return False

    def searches(self, entry: Entry) -> bool:
        """Would a search of this principal match the entry (scopes aside)?"""
        if self.role == "regional-admin":
            return True
        rank = visibility(entry)
        shown = rank <= 1 if self.role in ("partner-reader", "territorial-admin") else rank == 0
        return shown or self.in_perimeter(entry)

    def reads(self, entry: Entry) -> bool:
        """Would a read by id show it (scopes aside)?"""
        return self.searches(entry) or (visibility(entry) == 1 and entry.res_type in CITEABLE)


PRINCIPALS = (
    Who("anonymous", None),
    Who("partner-reader", "partner-reader", scopes="system/*.rs"),
    Who("referent", "structure-referent", organization="Organization/o29-draft"),
    Who("territorial-29", "territorial-admin", departements=("29",)),
    Who("territorial-35", "territorial-admin", departements=("35",)),
    Who("regional", "regional-admin"),
    Who("regional-read-only", "regional-admin", scopes="system/*.rs"),
    Who("services-only", "regional-admin", scopes="system/HealthcareService.rs"),
)


class Directory:
    """The fixture app, its tokens, and helpers to ask it things as each principal."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.web: FlaskClient = app.test_client()
        self.services = app.extensions["fhirsrv"]
        self._headers: dict[str, dict[str, str]] = {}
        self._subscriptions: dict[str, str] = {}
        # Apps on the same database with other settings (`app_with`), disposed with the fixture.
        self.other_apps: dict[str, Flask] = {}

    def app_with(self, **overrides: object) -> Flask:
        """An app on the fixture's database with these settings changed (made once)."""
        key = repr(sorted(overrides.items()))
        if key not in self.other_apps:
            from fhirsrv.app import create_app

            self.other_apps[key] = create_app(self.services.settings.overridden(**overrides))
        return self.other_apps[key]

    def populate(self) -> None:
        with self.services.engine.begin() as conn:
            for entry in ENTRIES.values():
                writes.create(self.services, conn, dict(entry.body), entry.res_id, actor=SERVER)
        # One audited write by a client, so the audit log is not empty.
        body = dict(ENTRIES["Practitioner/p-alone"].body) | {"name": [{"family": "Seule", "given": ["Anne"]}]}
        regional = self.headers(next(p for p in PRINCIPALS if p.name == "regional"))
        assert self.web.put("/fhir/Practitioner/p-alone", json=body, headers=regional).status_code == 200

    def headers(self, who: Who) -> dict[str, str]:
        if who.role is None:
            return {"Content-Type": FHIR}
        if who.name not in self._headers:
            with self.services.engine.begin() as conn:
                client, secret = add_client(
                    conn, f"table {who.name}", who.scopes, who.role, list(who.departements), who.organization
                )
            response = self.web.post(
                "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
            )
            assert response.status_code == 200, response.get_json()
            token = response.get_json()["access_token"]
            self._headers[who.name] = {"Authorization": f"Bearer {token}", "Content-Type": FHIR}
        return self._headers[who.name]

    def subscriptions(self) -> dict[str, str]:
        """One Subscription per principal whose scopes let it create one (by POST, with its
        token), and one the server wrote itself (SERVER_SUBSCRIPTION): name -> id."""
        if not self._subscriptions:
            body = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "table",
                "criteria": "HealthcareService?name=offre",
                "channel": {"type": "rest-hook", "endpoint": f"{RECEIVER}/notify", "header": ["Authorization: Bearer x"]},
            }
            for who in PRINCIPALS:
                if who.role is None or not who.may("Subscription", "c"):
                    continue
                answer = self.web.post("/fhir/Subscription", json=body, headers=self.headers(who))
                assert answer.status_code == 201, (who.name, answer.get_json())
                self._subscriptions[who.name] = answer.get_json()["id"]
            with self.services.engine.begin() as conn:
                stored = writes.create(self.services, conn, dict(body), actor=SERVER)
            self._subscriptions[SERVER_SUBSCRIPTION] = stored.res_id
        return self._subscriptions

    def reset(self) -> None:
        """Put every entry back as the fixture wrote it (write tests change them)."""
        with self.services.engine.begin() as conn:
            from fhirsrv.storage import repository

            for entry in ENTRIES.values():
                current = repository.get_current(conn, entry.res_type, entry.res_id)
                if current is None:
                    writes.create(self.services, conn, dict(entry.body), entry.res_id, actor=SERVER)
                elif current.deleted or not writes.unchanged(current, entry.body):
                    writes.replace(self.services, conn, current, dict(entry.body), actor=SERVER)
