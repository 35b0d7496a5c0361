"""Which entries a role may write: the write guard run inside every write transaction.

- regional-admin: everything;
- territorial-admin: directory entries located in its départements (Location.address.district,
  else the first two digits of postalCode; a service, role or endpoint through its locations or
  its structure, fetched in one query);
- structure-referent: its own Organization and the HealthcareService, Location,
  PractitionerRole and Endpoint that reference it.
Both the stored version and the new content are checked, so nobody moves an entry out of, or
into, a perimeter that is not theirs.
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context
from sqlalchemy import Connection

from fhirsrv.auth.principal import Principal
from fhirsrv.errors import Forbidden, Unauthorized
from fhirsrv.interactions.context import current_principal
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource

DIRECTORY_TYPES = ("Organization", "Location", "HealthcareService", "PractitionerRole", "Endpoint")
# Where each directory type names its structure.
OWNER_FIELD = {
    "HealthcareService": "providedBy",
    "PractitionerRole": "organization",
    "Location": "managingOrganization",
    "Endpoint": "managingOrganization",
}
SERVER_ONLY = ("AuditEvent",)
CHALLENGE = 'Bearer realm="fhirsrv", error="invalid_token"'


def unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": CHALLENGE})


def _local_ref(value: Any, res_type: str) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    if isinstance(ref, str) and ref.startswith(res_type + "/") and ref.count("/") == 1:
        return ref.split("/", 1)[1]
    return None


def address_departements(res: dict[str, Any]) -> set[str]:
    addresses = res.get("address")
    if isinstance(addresses, dict):
        addresses = [addresses]
    found = set()
    for address in addresses if isinstance(addresses, list) else []:
        if not isinstance(address, dict):
            continue
        district, postal = address.get("district"), address.get("postalCode")
        if isinstance(district, str) and district.strip():
            found.add(district.strip())
        elif isinstance(postal, str) and len(postal) >= 2:
            # Corsica (2A/2B) shares the 20 prefix; overseas départements have three digits.
            found.add(postal[:3] if postal.startswith("97") else postal[:2])
    return found


def departements(conn: Connection, res: dict[str, Any]) -> set[str]:
    """The départements an entry is located in; empty when it cannot be told."""
    res_type = res.get("resourceType")
    if res_type in ("Location", "Organization"):
        return address_departements(res)
    listed = res.get("location")
    locations = [_local_ref(v, "Location") for v in listed] if isinstance(listed, list) else []
    owner = OWNER_FIELD.get(str(res_type))
    org_id = _local_ref(res.get(owner), "Organization") if owner else None
    keys = [("Location", i) for i in locations if i] + ([("Organization", org_id)] if org_id else [])
    found_rows = repository.get_by_keys(conn, keys)
    found: set[str] = set()
    for (kind, _), stored in found_rows.items():
        if kind == "Location" and stored.content:
            found |= address_departements(loads(stored.content))
    if not found and org_id and ("Organization", org_id) in found_rows:
        content = found_rows[("Organization", org_id)].content
        found = address_departements(loads(content)) if content else set()
    return found


def owner_of(res: dict[str, Any]) -> str | None:
    """The Organization id an entry belongs to (itself for an Organization)."""
    if res.get("resourceType") == "Organization":
        return res.get("id") if isinstance(res.get("id"), str) else None
    field = OWNER_FIELD.get(str(res.get("resourceType")))
    return _local_ref(res.get(field), "Organization") if field else None


def _check_entry(conn: Connection, principal: Principal, res: dict[str, Any]) -> None:
    res_type = res.get("resourceType")
    if principal.is_regional:
        return
    if res_type not in DIRECTORY_TYPES:
        raise Forbidden(f"Only a regional administrator may write {res_type} resources")
    if principal.role == "territorial-admin":
        where = departements(conn, res)
        if not where or not where <= set(principal.departements):
            shown = ", ".join(sorted(where)) or "unknown"
            raise Forbidden(
                f"This {res_type} is located in département(s) {shown}, outside this territory "
                f"({', '.join(principal.departements)})"
            )
        return
    if principal.role == "structure-referent":
        own = (principal.organization or "").removeprefix("Organization/")
        if not own or owner_of(res) != own:
            raise Forbidden(f"This {res_type} does not belong to the structure Organization/{own}")
        return
    raise Forbidden("This client has no role allowing writes")


def write_guard(
    conn: Connection, res_type: str, current: StoredResource | None, new: dict[str, Any] | None
) -> None:
    """Refuse (401/403) a write the caller may not make; internal callers (no HTTP request) pass."""
    principal = current_principal.get()
    if principal is None:
        if not has_request_context():
            return  # the loader, a scheduled sweep: the server itself
        raise unauthorized("Writing needs a bearer access token (see /fhir/.well-known/smart-configuration)")
    interaction = "c" if current is None or current.deleted else ("d" if new is None else "u")
    if res_type in SERVER_ONLY:
        raise Forbidden(f"{res_type} resources are written by the server only")
    if not principal.may(res_type, interaction):
        raise Forbidden(f"The token's scopes do not allow '{interaction}' on {res_type}")
    if current is not None and not current.deleted and current.content:
        _check_entry(conn, principal, loads(current.content))
    if new is not None:
        _check_entry(conn, principal, new)
