"""What the access policy needs to know about a stored resource, read from its content.

An entry of the directory is a structure (Organization) and what belongs to it: its offers
(HealthcareService.providedBy), places (Location.managingOrganization), roles
(PractitionerRole.organization) and endpoints (Endpoint.managingOrganization). People
(Practitioner) belong to the structures of their roles. These facts are kept per resource in
the `entry_access` table (facts_store.py) so a visibility test is one index probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fhirsrv.canonical import Canonicals

DIRECTORY_TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Endpoint")
# Types whose visibility the policy derives from their structure: the directory and its people.
GOVERNED_TYPES = (*DIRECTORY_TYPES, "Practitioner")
# Once delisted, these stay readable by id (never in anonymous search): care plans cite them,
# and "references never break". Roles, endpoints and people carry persons' contact details: a
# structure that left the directory no longer shows them to the public.
CITEABLE_TYPES = ("Organization", "HealthcareService", "Location")
# Readable by regional administrators only (and written by the server only).
AUDIT_TYPES = ("AuditEvent",)

# Where each directory type names its structure.
OWNER_FIELD = {
    "HealthcareService": "providedBy",
    "PractitionerRole": "organization",
    "Location": "managingOrganization",
    "Endpoint": "managingOrganization",
}

PUBLIC_STATUSES = frozenset({"published", "verification-pending"})
RETIRED_STATUSES = frozenset({"delisted", "withdrawn"})


class Visibility(StrEnum):
    """Who the entry is shown to, from the strictest status of the entry and its structure."""

    PUBLIC = "public"  # listed: in anonymous search
    RETIRED = "retired"  # left the directory: readable by id (citeable types), not searchable
    HIDDEN = "hidden"  # not (yet) listed: its structure's people and administrators only


def status_visibility(status: str | None, *, absent: Visibility) -> Visibility:
    if status is None:
        return absent
    if status in PUBLIC_STATUSES:
        return Visibility.PUBLIC
    if status in RETIRED_STATUSES:
        return Visibility.RETIRED
    return Visibility.HIDDEN


def local_reference(value: Any, res_type: str) -> str | None:
    """The id of a relative reference `Type/id` to a resource of this server, else None."""
    ref = value.get("reference") if isinstance(value, dict) else None
    if isinstance(ref, str) and ref.startswith(res_type + "/") and ref.count("/") == 1:
        return ref.split("/", 1)[1] or None
    return None


@dataclass(frozen=True)
class Facts:
    res_type: str
    status: str | None
    structure: str | None
    person: str | None
    territory: frozenset[str]
    commune: str | None = None
    # The entry's lifecycle record shows it was listed once: delisted (only a listed entry is),
    # or published by the region (`regionValidatedOn`, which $publish writes and nothing
    # removes). What a file load or a rebuild knows of an entry's past; the server also
    # remembers each entry it showed (facts_store.py).
    listed: bool = False


class FactReader:
    """Reads the facts from content, under the deployment's canonical base."""

    def __init__(self, canonicals: Canonicals) -> None:
        self.lifecycle_url = canonicals.entry_lifecycle
        self.departement_url = canonicals.departement

    @staticmethod
    def commune(res: dict[str, Any]) -> str | None:
        """A Location's commune: the ROR commune-cog extension's INSEE code."""
        for ext in res.get("extension") or []:
            if isinstance(ext, dict) and str(ext.get("url", "")).endswith("/ror-commune-cog"):
                for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or []:
                    code = coding.get("code") if isinstance(coding, dict) else None
                    if isinstance(code, str) and code.strip():
                        return code.strip()[:8]
        return None

    def lifecycle(self, res: dict[str, Any]) -> dict[str, Any] | None:
        """The lifecycle extension as stored, for comparing two versions."""
        for ext in res.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == self.lifecycle_url:
                return ext
        return None

    def status(self, res: dict[str, Any]) -> str | None:
        for ext in res.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == self.lifecycle_url:
                for sub in ext.get("extension") or []:
                    if isinstance(sub, dict) and sub.get("url") == "status":
                        code = sub.get("valueCode")
                        return code if isinstance(code, str) else "unknown"
                return "unknown"  # a lifecycle without a status: not listed
        return None

    def structure(self, res: dict[str, Any]) -> str | None:
        res_type = res.get("resourceType")
        if res_type == "Organization":
            return res.get("id") if isinstance(res.get("id"), str) else None
        field = OWNER_FIELD.get(str(res_type))
        return local_reference(res.get(field), "Organization") if field else None

    def departements(self, res: dict[str, Any]) -> frozenset[str]:
        """An address's département: the SOS extension's INSEE code, else the postal code's
        first two digits (three overseas) — the rule of the `departement` search parameter."""
        addresses = res.get("address")
        if isinstance(addresses, dict):
            addresses = [addresses]
        found: set[str] = set()
        for address in addresses if isinstance(addresses, list) else []:
            if not isinstance(address, dict):
                continue
            code = self._departement_extension(address)
            postal = address.get("postalCode")
            if code:
                found.add(code)
            elif isinstance(postal, str) and len(postal.strip()) >= 2:
                postal = postal.strip()
                found.add(postal[:3] if postal.startswith("97") else postal[:2])
        return frozenset(found)

    def _departement_extension(self, address: dict[str, Any]) -> str | None:
        for ext in address.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == self.departement_url:
                value = ext.get("valueCoding") or {}
                code = value.get("code") if isinstance(value, dict) else None
                if isinstance(code, str) and code.strip():
                    return code.strip()
        return None

    def facts(self, res: dict[str, Any]) -> Facts:
        res_type = str(res.get("resourceType"))
        person = (
            local_reference(res.get("practitioner"), "Practitioner") if res_type == "PractitionerRole" else None
        )
        territory = self.departements(res) if res_type == "Organization" else frozenset()
        status = self.status(res) if res_type in DIRECTORY_TYPES else None
        commune = self.commune(res) if res_type == "Location" else None
        listed = status == "delisted" or (status is not None and self.was_published(res))
        return Facts(res_type, status, self.structure(res), person, territory, commune, listed)

    def was_published(self, res: dict[str, Any]) -> bool:
        """The lifecycle record holds the region's publication (`regionValidatedOn`)."""
        record = self.lifecycle(res)
        parts = record.get("extension") if record else None
        return any(isinstance(p, dict) and p.get("url") == "regionValidatedOn" for p in parts or [])
