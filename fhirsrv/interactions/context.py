"""What every interaction receives (services, request facts) and returns (a Result)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine

from fhirsrv.access.audit import AuditTrail
from fhirsrv.access.policy import AccessPolicy
from fhirsrv.access.principal import Principal
from fhirsrv.errors import Issue
from fhirsrv.interactions.cursors import CursorSeal
from fhirsrv.interactions.identifiers import DirectoryIdentifiers
from fhirsrv.settings import Settings
from fhirsrv.storage.repository import StoredResource

if TYPE_CHECKING:
    from fhirsrv.interactions.operations import OperationRegistry
    from fhirsrv.search.engine import SearchEngine


# Called after a resource is written (res is None for a deletion), inside the transaction:
# e.g. the terminology closure for CodeSystems, the search registry for SearchParameters.
WriteHook = Callable[[Connection, StoredResource, "dict[str, Any] | None"], None]
# The profile rules of a write or $validate: (resource, profiles asked for, who writes) -> issues.
ProfileCheck = Callable[[dict[str, Any], tuple[str, ...], Principal], list[Issue]]
# A type's own rules on a write, inside its transaction once the access policy has allowed it:
# (services, conn, who writes, the current version or None, the new content) -> the content to
# store. It refuses content the type cannot work with (raising a FhirError) and sets what the
# server owns in it: a Subscription's criteria are checked by the search engine, its endpoint
# against the network rules, and its status is the server's (fhirsrv/sync/subscriptions.py).
ResourceRule = Callable[["Services", Connection, Principal, "StoredResource | None", dict[str, Any]], dict[str, Any]]


@dataclass
class Services:
    """The long-lived objects an app is made of; built once by app.build_services().

    Every field is required: a server without its access policy, audit trail or profile
    check cannot be built, rather than running with the check silently missing."""

    settings: Settings
    engine: Engine
    search: SearchEngine
    policy: AccessPolicy
    audit: AuditTrail
    profile_check: ProfileCheck
    write_hooks: tuple[WriteHook, ...]
    # Per type (ResourceRule): applied by the write path to every create and update of it.
    resource_rules: dict[str, ResourceRule]
    operations: OperationRegistry
    # Seals the paging cursors handed to clients (search and history).
    cursors: CursorSeal
    # The directory's own identifiers: unique per type, frozen once published.
    identifiers: DirectoryIdentifiers
    # The CapabilityStatement's rest.security (OAuth endpoints) for a public base, None with
    # authorization off: the endpoints are under the base the statement is served from.
    security_section: Callable[[str], dict[str, Any]] | None = None
    # The last CapabilityStatement built, serialised, with what it was built from
    # (interactions/capabilities.py): ("current", (key, statement)).
    capability_cache: dict[str, Any] = field(default_factory=dict)


class Meter(Protocol):
    """The caller's rate limit, for a request that is worth more than one (a Bundle's entries)."""

    def charge(self, requests: int) -> None:
        """Count `requests` more against the caller's limit; raises TooManyRequests (429) past it."""
        ...


class _Unmetered:
    def charge(self, requests: int) -> None:
        return None


# Requests no rate limit applies to: the server's own (the file loader), authorization off
# (tests, a local demo), a limit set to 0. Named, so that it is always a decision, never a default.
UNMETERED: Meter = _Unmetered()


@dataclass
class RequestInfo:
    """The HTTP facts an interaction may depend on, already parsed by api/."""

    base_url: str  # e.g. "http://127.0.0.1:8080/fhir", no trailing slash
    principal: Principal  # who asks: never optional (ANONYMOUS, SERVER or a client)
    meter: Meter  # the caller's rate limit: never optional either (UNMETERED is a choice)
    prefer_return: str | None = None  # minimal | representation | OperationOutcome
    prefer_handling: str | None = None  # lenient | strict; None: the client did not say
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_none_exist: str | None = None  # query string of a conditional create
    # X-Lifecycle-Repair: a regional admin's reason for changing a lifecycle record by hand.
    lifecycle_repair: str | None = None


@dataclass
class Result:
    """An interaction's answer. `resource` may contain orjson.Fragment (stored JSON spliced as is)."""

    status: int = 200
    resource: Any = None
    stored: StoredResource | None = None
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # absolute URL of the (versioned) resource for Location header
    # A searchset's entries as stored, in the Bundle's entry order (matches, then includes): for
    # the in-process reader of the public pages, which shows them parsed and can keep a parsed
    # version (versions never change) instead of parsing the whole Bundle again.
    entries: tuple[StoredResource, ...] = ()
