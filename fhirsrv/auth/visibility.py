"""What a caller may see: the read guard (hides a resource: read answers 404) and the search
guard (adds criteria, so paging and totals stay right).

Anonymous callers see resources without an entry lifecycle (conformance and terminology
content, Practitioner...) and directory entries whose status is `published` or
`verification-pending` (still listed while the structure confirms its data); never drafts,
submitted or validated-but-unpublished entries, delisted entries, nor AuditEvents.
Authenticated callers see what their scopes allow (`r` to read, `s` to search); AuditEvents
only as regional administrators.
"""

from __future__ import annotations

from typing import Any

from fhirsrv.auth.principal import Principal
from fhirsrv.auth.roles import unauthorized
from fhirsrv.errors import Forbidden
from fhirsrv.interactions.context import current_principal
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource

LIFECYCLE_URL = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
PUBLIC_STATUSES = frozenset({"published", "verification-pending"})
HIDDEN_STATUSES = "draft,submitted,territorial-validated,delisted"
RESTRICTED_TYPES = frozenset({"AuditEvent"})


def entry_status(res: dict[str, Any]) -> str | None:
    for ext in res.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == LIFECYCLE_URL:
            for sub in ext.get("extension") or []:
                if isinstance(sub, dict) and sub.get("url") == "status":
                    return sub.get("valueCode")
    return None


def publicly_visible(stored: StoredResource) -> bool:
    if stored.res_type in RESTRICTED_TYPES:
        return False
    content = stored.content or ""
    if LIFECYCLE_URL not in content:  # cheap: most conformance content never mentions it
        return True
    return entry_status(loads(content)) in PUBLIC_STATUSES


def may_read(principal: Principal, res_type: str) -> bool:
    if res_type in RESTRICTED_TYPES and not principal.is_regional:
        return False
    return principal.may(res_type, "r")


def read_guard(stored: StoredResource) -> bool:
    principal = current_principal.get()
    if principal is None:
        return publicly_visible(stored)
    return may_read(principal, stored.res_type)


def _anonymous_across_types(params: list[tuple[str, str]], has_status_param: Any) -> list[tuple[str, str]]:
    """`/fhir?_type=A,B` without a token: the hidden statuses filter must apply to every type or
    to none (the engine applies a criterion only when all the types searched define it)."""
    types = {t.strip() for name, value in params if name == "_type" for t in value.split(",") if t.strip()}
    if not types or types & RESTRICTED_TYPES:
        raise unauthorized("A search across all types needs a token; name the types with _type")
    with_status = {t for t in types if has_status_param(t)}
    if with_status == types:
        return [*params, ("entry-status:not", HIDDEN_STATUSES)]
    if not with_status:
        return params
    raise unauthorized(
        f"Without a token, search {', '.join(sorted(with_status))} apart from "
        f"{', '.join(sorted(types - with_status))} (their entries have a lifecycle, the others not)"
    )


def make_search_guard(has_status_param: Any) -> Any:
    """`has_status_param(res_type)` tells whether the type has the SOS entry-status parameter."""

    def search_guard(res_type: str | None, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        principal = current_principal.get()
        if principal is None:
            if res_type is None:
                return _anonymous_across_types(params, has_status_param)
            if res_type in RESTRICTED_TYPES:
                raise unauthorized(f"Searching {res_type} needs a regional administrator's token")
            if has_status_param(res_type):
                return [*params, ("entry-status:not", HIDDEN_STATUSES)]
            return params
        target = res_type or "*"
        if res_type in RESTRICTED_TYPES and not principal.is_regional:
            raise Forbidden(f"Only regional administrators may search {res_type}")
        if not principal.may(target, "s"):
            raise Forbidden(f"The token's scopes do not allow searching {target}")
        return params

    return search_guard
