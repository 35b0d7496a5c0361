"""What a `$export` kick-off asks for, checked before a job is queued.

Everything that can be judged from the request is judged here, at the kick-off, so a client
learns of a mistake at once (400) rather than from a job that fails minutes later: the output
format, `_since` (an instant), `_type` (known types the caller may search), and each
`_typeFilter`, which is prepared and compiled by the server's own search engine under the
caller's read scope — the filter means exactly what the same search would, there is no second
matcher. Unsupported parameters (`_elements`, `includeAssociatedData`, `patient`...) are
refused too, unless the client sent `Prefer: handling=lenient`: then they are ignored and
reported in the manifest's `error` array (an OperationOutcome), as the Bulk Data IG asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhirsrv.access.facts import AUDIT_TYPES
from fhirsrv.access.policy import unauthorized
from fhirsrv.access.principal import Principal
from fhirsrv.errors import BadRequest, Forbidden, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.interactions.instants import parse_instant
from fhirsrv.resource_types import OWNED_TYPES, SUPPORTED_TYPES
from fhirsrv.search.parameters import CONTROL
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import format_instant
from fhirsrv.validation.primitives import format_problem

# The order of the files: what other resources depend on first, so that `fhirsrv load` of a
# downloaded folder (its files in name order) loads a SearchParameter before what it indexes
# and a structure before its offers. The audit trail comes last.
EXPORT_ORDER = (
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "StructureDefinition",
    "SearchParameter",
    "Organization",
    "Location",
    "Endpoint",
    "Practitioner",
    "HealthcareService",
    "PractitionerRole",
    "AuditEvent",
)
# A Subscription belongs to the client that wrote it and holds the headers sent to its
# receiver (access/owners.py): it is no directory content, and no export holds one.
EXPORTED_TYPES = tuple(t for t in SUPPORTED_TYPES if t not in OWNED_TYPES)
assert sorted(EXPORT_ORDER) == sorted(EXPORTED_TYPES), "every exported type has its place in an export"

# The Bulk Data IG's spellings of NDJSON, the only format offered.
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
SUPPORTED_PARAMETERS = ("_outputFormat", "_since", "_type", "_typeFilter")
# Search result parameters shape a page, not a selection: the IG forbids them in a filter.
# (`_filter` is a criterion on this server, and `_type` has no meaning inside one type's query.)
_NOT_IN_FILTERS = (CONTROL - {"_filter"}) | {"_type"}
# Filters one kick-off may carry, each a search compiled at the kick-off and at every chunk.
MAX_TYPE_FILTERS = 20


@dataclass(frozen=True)
class ExportRequest:
    """A kick-off's parameters once checked: what the job exports."""

    types: tuple[str, ...]
    since: datetime | None = None
    # Per type, the queries of its `_typeFilter`s (a resource matching any of them is exported).
    type_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Parameters ignored under lenient handling, reported in the manifest's `error` array.
    issues: tuple[Issue, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "types": list(self.types),
            "since": format_instant(self.since) if self.since else None,
            "typeFilters": {t: list(q) for t, q in self.type_filters.items()},
            "issues": [i.to_fhir() for i in self.issues],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        since = data.get("since")
        return cls(
            tuple(data["types"]),
            parse_instant(since, "_since") if since else None,
            {t: tuple(q) for t, q in (data.get("typeFilters") or {}).items()},
            tuple(
                Issue(i["severity"], i["code"], i["diagnostics"], i.get("expression", []))
                for i in data.get("issues") or []
            ),
        )


def check_caller(services: Services, principal: Principal) -> None:
    """Anonymous callers export only when the deployment says so (FHIRSRV_EXPORT_ANONYMOUS):
    an export is the whole public directory at once, heavier than any page of search. Judged
    before anything else of the request, so a refused caller learns nothing from it."""
    if principal.is_anonymous and not services.settings.export_anonymous:
        raise unauthorized("$export needs a bearer access token (see /fhir/.well-known/smart-configuration)")


def parse_kickoff(
    services: Services,
    principal: Principal,
    level_type: str | None,
    params: list[tuple[str, str]],
    *,
    lenient: bool,
) -> ExportRequest:
    """The checked request of a kick-off at system level (`level_type` None) or on one type."""
    issues: list[Issue] = []
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        if name in SUPPORTED_PARAMETERS:
            by_name.setdefault(name, []).append(value)
        elif lenient:
            issues.append(
                Issue("warning", "not-supported", f"$export parameter '{name}' is not supported: ignored")
            )
        else:
            raise BadRequest(
                f"$export parameter '{name}' is not supported (this server takes "
                f"{', '.join(SUPPORTED_PARAMETERS)}; 'Prefer: handling=lenient' ignores others)",
                code="not-supported",
            )
    _check_output_format(by_name.get("_outputFormat", []))
    since = _since(by_name.get("_since", []))
    types = _types(services, principal, level_type, by_name.get("_type", []), lenient, issues)
    filters = _type_filters(services, principal, types, by_name.get("_typeFilter", []), lenient, issues)
    return ExportRequest(types, since, filters, tuple(issues))


def _check_output_format(values: list[str]) -> None:
    if len(values) > 1:
        raise BadRequest("_outputFormat may be given once")
    if not values:
        return
    # "+" in an unencoded query string arrives as a space.
    wanted = values[0].strip().lower().replace(" ", "+")
    if wanted not in OUTPUT_FORMATS:
        raise BadRequest(
            f"_outputFormat '{values[0][:60]}' is not supported; this server writes {', '.join(OUTPUT_FORMATS)}",
            code="not-supported",
        )


def _since(values: list[str]) -> datetime | None:
    if len(values) > 1:
        raise BadRequest("_since may be given once")
    if not values:
        return None
    value = values[0].strip().replace(" ", "+")  # an unencoded "+00:00" arrives as " 00:00"
    problem = format_problem("instant", value) if value else "an empty value is not an instant"
    if problem:
        raise BadRequest(f"_since must be an instant (e.g. a manifest's transactionTime): {problem}")
    return parse_instant(value, "_since")


def _searchable_by_default(principal: Principal, res_type: str) -> bool:
    """The types an export without `_type` holds: every type the caller may search, but the
    audit trail, which is exported only when `_type` names it: it is the server's record of
    its writes, not directory content, it grows with every write, and `fhirsrv load` does not
    take it back (AuditEvents are written by the server only)."""
    return res_type not in AUDIT_TYPES and principal.may(res_type, "s")


def _types(
    services: Services,
    principal: Principal,
    level_type: str | None,
    values: list[str],
    lenient: bool,
    issues: list[Issue],
) -> tuple[str, ...]:
    named = [t.strip() for value in values for t in value.split(",") if t.strip()]
    unknown = [t for t in named if t not in SUPPORTED_TYPES]
    if unknown:
        message = (
            f"_type names resource types this server does not hold: {', '.join(u[:64] for u in unknown)}"
        )
        if not lenient:
            raise BadRequest(message, code="not-supported")
        issues.append(Issue("warning", "not-supported", f"{message}: ignored"))
        named = [t for t in named if t in SUPPORTED_TYPES]
        if not named and values:
            raise BadRequest(f"{message}, and no other")
    owned = [t for t in dict.fromkeys([*named, level_type]) if t in OWNED_TYPES]
    if owned:
        raise BadRequest(
            f"{', '.join(owned)} resources are not exported: each belongs to the client that wrote it "
            "(read or search your own instead)",
            code="not-supported",
        )
    if level_type is not None:
        others = [t for t in named if t != level_type]
        if others:
            raise BadRequest(
                f"{level_type}/$export exports {level_type} only; _type names {', '.join(others)} "
                "(use [base]/$export for several types)"
            )
        named = [level_type]
    if named:
        for res_type in named:
            # The same refusals as a search of the type: 401 for the audit trail without a
            # token, 403 for a type the token's scopes do not let it search.
            services.policy.check_read(principal, res_type, "s")
        return tuple(t for t in EXPORT_ORDER if t in named)
    chosen = tuple(t for t in EXPORT_ORDER if _searchable_by_default(principal, t))
    if not chosen:
        raise Forbidden("The token's scopes let it search no resource type: there is nothing to export")
    return chosen


def _type_filters(
    services: Services,
    principal: Principal,
    types: tuple[str, ...],
    values: list[str],
    lenient: bool,
    issues: list[Issue],
) -> dict[str, tuple[str, ...]]:
    if len(values) > MAX_TYPE_FILTERS:
        raise BadRequest(f"At most {MAX_TYPE_FILTERS} _typeFilter parameters may be given", code="too-costly")
    filters: dict[str, list[str]] = {}
    if not values:
        return {}
    scope = services.policy.scope(principal)
    engine = services.search
    with read_transaction(services.engine) as conn:
        engine.ensure_current(conn)  # a SearchParameter stored by another process counts too
        for value in values:
            res_type, sep, query = value.partition("?")
            res_type = res_type.strip()
            problem = None
            if res_type not in SUPPORTED_TYPES:
                problem = f"_typeFilter '{value[:80]}' does not start with a resource type this server holds"
            elif res_type not in types:
                problem = f"_typeFilter on {res_type}, which this export does not include (_type)"
            if problem:
                if not lenient:
                    raise BadRequest(problem)
                issues.append(Issue("warning", "not-supported", f"{problem}: ignored"))
                continue
            criteria = parse_qsl(query, keep_blank_values=True) if sep else []
            if not criteria:
                raise BadRequest(f"_typeFilter on {res_type} has no search criteria (Type?name=value...)")
            shaping = sorted({n for n, _ in criteria if n.split(":", 1)[0] in _NOT_IN_FILTERS})
            if shaping:
                raise BadRequest(
                    f"_typeFilter on {res_type}: {', '.join(shaping)} shape a search's answer and cannot "
                    "select resources to export"
                )
            # Prepared as the search would be (unknown parameters refused unless lenient), then
            # compiled under the caller's scope: a filter the search engine refuses is a 400 now.
            request = engine.prepare(res_type, criteria, strict=not lenient)
            issues.extend(request.issues)
            if not request.criteria:
                raise BadRequest(f"_typeFilter on {res_type} has no criteria this server knows")
            engine.conditions_for(conn, res_type, request.used, scope)
            filters.setdefault(res_type, []).append(urlencode(request.used))
    return {t: tuple(q) for t, q in filters.items()}
