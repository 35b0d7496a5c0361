"""batch and transaction Bundles (POST /fhir).

A transaction runs in one database transaction: ids are assigned to every POST first,
`urn:uuid:` and conditional references are rewritten to them, entries are processed in the
order the specification gives (DELETE, POST, PUT/PATCH, GET) and one failing entry rolls all
back, with an OperationOutcome naming it. Two writing entries that act on the same resource
fail the transaction before anything is written: their order would decide the outcome, and
R4 says such a transaction SHALL fail. A batch runs each entry on its own.

A Bundle is many requests in one, so it is bounded as such (one anonymous batch of 100
searches of 1,000 answered 472 MB and took the process from 715 MB to 2.26 GB): each entry
counts against the caller's rate limit, the page sizes of its reads may not add up past
`max_bundle_results` (413, before anything runs), and its answer is built an entry at a time,
each serialized as soon as it has run, up to `max_response_bytes`: past it, a batch's remaining
reads are answered 422 without running, and a transaction fails (422, nothing written).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import Connection

from fhirsrv.errors import AnswerTooLarge, BadRequest, FhirError, Issue, PayloadTooLarge
from fhirsrv.interactions import create as create_mod
from fhirsrv.interactions import delete as delete_mod
from fhirsrv.interactions import patch as patch_mod
from fhirsrv.interactions import read as read_mod
from fhirsrv.interactions import update as update_mod
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.preconditions import match_one
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_resource, check_type
from fhirsrv.interactions.search import search
from fhirsrv.interactions.writes import new_id
from fhirsrv.settings import VARIABLES, Settings
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import format_instant
from fhirsrv.text import small_natural

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_REASON = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: str | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    assigned_id: str | None = None
    result: Result | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The entry of the response Bundle, serialized once the entry has run (see _Answer).
    answer: orjson.Fragment | None = None

    @property
    def label(self) -> str:
        return f"Bundle.entry[{self.index}] ({self.method} {self.url})"


@dataclass
class Target:
    res_type: str
    res_id: str | None = None
    version: str | None = None
    query: str | None = None


def _parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        # R4 (Bundle.entry.request.url): relative to the server's base. A host here was dropped
        # and the entry run on this server, whatever server it named.
        raise BadRequest(f"The entry request url '{url[:200]}' must be relative to this server's base (Type/id?query)")
    path = parts.path.strip("/")
    segments = path.split("/") if path else []
    if not segments:
        raise BadRequest("The entry request url names no resource type")
    target = Target(segments[0], query=parts.query or None)
    if len(segments) >= 2:
        target.res_id = segments[1]
    if len(segments) == 4 and segments[2] == "_history":
        target.version = segments[3]
    elif len(segments) > 2:
        raise BadRequest(f"Unsupported entry request url '{url}'")
    return target


def _parse_entries(bundle: dict[str, Any], max_entries: int) -> list[Entry]:
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise BadRequest("Bundle.entry must be an array", expression=["Bundle.entry"])
    if len(raw) > max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(raw)} entries; this server accepts at most {max_entries}")
    entries = []
    for i, item in enumerate(raw):
        where = f"Bundle.entry[{i}]"
        request = item.get("request") if isinstance(item, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise BadRequest(
                f"{where} has no request.method and request.url", expression=[f"{where}.request"]
            )
        method = str(request["method"]).upper()
        if method not in _ORDER:
            raise BadRequest(f"{where}: unsupported method {method}", expression=[f"{where}.request.method"])
        resource = item.get("resource")
        if method in ("POST", "PUT", "PATCH") and resource is None:
            raise BadRequest(f"{where} ({method}) has no resource", expression=[f"{where}.resource"])
        entries.append(
            Entry(
                i,
                method,
                str(request["url"]),
                resource,
                item.get("fullUrl"),
                request.get("ifMatch"),
                request.get("ifNoneExist"),
                request.get("ifNoneMatch"),
            )
        )
    return entries


def process(
    services: Services, info: RequestInfo, bundle: dict[str, Any], conn: Connection | None = None
) -> Result:
    """`conn`: run a transaction inside a caller's database transaction (the file loader)."""
    check_resource(bundle, "Bundle")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            f"POST to the base accepts batch or transaction Bundles, not '{kind}'", expression=["Bundle.type"]
        )
    settings = services.settings
    entries = _parse_entries(bundle, settings.max_bundle_entries)
    # The Bundle's own request was counted when it arrived: each further entry counts too.
    info.meter.charge(max(0, len(entries) - 1))
    _check_reads(entries, settings)
    answer = _Answer(info, settings.max_response_bytes)
    if kind == "transaction" and conn is not None:
        _transaction_entries(services, info, entries, conn, answer)
    elif kind == "transaction":
        with audited(services, info, "transaction", "transaction Bundle"):
            _run_transaction(services, info, entries, answer)
    else:
        _run_batch(services, info, entries, answer)
    return Result(
        status=200,
        resource={
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "link": [{"relation": "self", "url": info.base_url}],
            "entry": [e.answer or answer.serialize(e) for e in entries],
        },
    )


def _reads(entry: Entry, settings: Settings) -> int:
    """The resources a reading entry may answer with: its page size for a search, one for a
    read (includes aside: they are bounded per page, and by the answer's bytes)."""
    if entry.method not in ("GET", "HEAD"):
        return 0
    try:
        target = _parse_target(entry.url)
    except BadRequest:
        return 0  # the entry fails on its own when it runs (a batch's other entries still do)
    if target.res_id is not None:
        return 1
    counts = [v for k, v in parse_qsl(target.query or "", keep_blank_values=True) if k == "_count"]
    asked = small_natural(counts[-1]) if counts else None
    if asked is not None:
        return min(asked, settings.max_count)
    return settings.default_count


def _check_reads(entries: list[Entry], settings: Settings) -> None:
    """Refuse (413) before anything runs a Bundle whose reads could answer with more resources
    than one request may: the entry count alone let 100 searches of 1,000 through."""
    total = sum(_reads(e, settings) for e in entries)
    if total > settings.max_bundle_results:
        raise PayloadTooLarge(
            f"The Bundle's reads may answer with {total} resources (page sizes of its searches, one "
            f"per read); this server answers at most {settings.max_bundle_results} per Bundle "
            f"({VARIABLES['max_bundle_results']}): lower their _count or split the Bundle"
        )


class _Answer:
    """The response Bundle's entries, serialized one by one as they run, and their bytes: the
    answer is never held twice (as objects, then as JSON), and it stops at its byte budget."""

    def __init__(self, info: RequestInfo, budget: int) -> None:
        self.info = info
        self.budget = budget
        self.size = 0

    @property
    def spent(self) -> bool:
        return self.size > self.budget

    def serialize(self, entry: Entry) -> orjson.Fragment:
        data = orjson.dumps(_response_entry(self.info, entry))
        self.size += len(data)
        entry.answer = orjson.Fragment(data)
        entry.result = None  # its resources now live in the bytes only
        return entry.answer

    def refusal(self) -> AnswerTooLarge:
        return AnswerTooLarge(
            f"The answer to this Bundle reached {self.budget} bytes ({VARIABLES['max_response_bytes']}); "
            "this entry was not run: ask for it in another request"
        )


def _run_transaction(services: Services, info: RequestInfo, entries: list[Entry], answer: _Answer) -> None:
    with write_transaction(services.engine) as conn:
        _transaction_entries(services, info, entries, conn, answer)


def _check_access(services: Services, info: RequestInfo, entry: Entry) -> None:
    """What the access policy can refuse from the entry's request line alone, before any of
    the Bundle's conditional matches or reference resolutions look at stored data."""
    target = _parse_target(entry.url)
    check_type(target.res_type)
    policy = services.policy
    if entry.method in ("GET", "HEAD"):
        if target.res_id is None:
            for res_type in [target.res_type] if target.res_type else []:
                policy.check_read(info.principal, res_type, "s")
        else:
            policy.check_read(info.principal, target.res_type)
        return
    interaction = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}[entry.method]
    policy.check_write_intent(info.principal, target.res_type, interaction)


def _transaction_entries(
    services: Services, info: RequestInfo, entries: list[Entry], conn: Connection, answer: _Answer
) -> None:
    for entry in entries:
        try:
            _check_access(services, info, entry)
        except FhirError as exc:
            raise _for_entry(entry, exc) from exc
    mapping = _assign_ids(services, info, conn, entries)
    _refuse_overlaps(services, info, conn, entries)
    for entry in entries:
        if entry.resource is not None and mapping:
            entry.resource = _rewrite(entry.resource, mapping)
    for entry in entries:
        if entry.resource is not None:
            _resolve_conditional_refs(services, info, conn, entry)
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        try:
            entry.result = entry.result or _execute(services, info, entry, conn)
            answer.serialize(entry)
            if answer.spent:
                # All or nothing: the transaction's writes roll back with it.
                raise answer.refusal()
        except FhirError as exc:
            failure = _for_entry(entry, exc)
            if failure.status == 405:
                # The Bundle's own POST is allowed (a 405 would need an Allow for /fhir): it is
                # the request's content, one entry, that asks for what the server does not do.
                failure.status = 400
            raise failure from exc


def _run_batch(services: Services, info: RequestInfo, entries: list[Entry], answer: _Answer) -> None:
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        try:
            if answer.spent and entry.method in ("GET", "HEAD"):
                # Writes still run (their answers are bounded by the request's own size); reads
                # are what could make an answer without end.
                raise answer.refusal()
            with audited(services, info, entry.method.lower(), entry.url):
                _check_access(services, info, entry)
                with write_transaction(services.engine) as conn:
                    _resolve_conditional_refs(services, info, conn, entry)
                    entry.result = _execute(services, info, entry, conn)
        except FhirError as exc:
            entry.result = Result(status=exc.status, resource=_outcome(_for_entry(entry, exc).issues))
        answer.serialize(entry)


def _assign_ids(
    services: Services, info: RequestInfo, conn: Connection, entries: list[Entry]
) -> dict[str, str]:
    """fullUrl -> 'Type/id' for every entry whose resource others may point to."""
    mapping: dict[str, str] = {}
    scope = services.policy.scope(info.principal)
    for entry in entries:
        if entry.resource is None or entry.method not in ("POST", "PUT"):
            continue
        target = _parse_target(entry.url)
        if entry.method == "POST":
            existing = None
            if entry.if_none_exist:
                try:
                    existing = match_one(
                        services, conn, scope, target.res_type, entry.if_none_exist, "Conditional create"
                    )
                except FhirError as exc:
                    raise _for_entry(entry, exc) from exc
            if existing is not None:
                entry.result = read_mod.served(existing, 200)
                entry.assigned_id = existing.res_id
            else:
                entry.assigned_id = new_id()
        elif target.res_id is not None:
            entry.assigned_id = target.res_id
        elif target.query is not None:
            try:
                found = match_one(services, conn, scope, target.res_type, target.query, "Conditional update")
            except FhirError as exc:
                raise _for_entry(entry, exc) from exc
            entry.assigned_id = found.res_id if found else (entry.resource.get("id") or new_id())
            entry.extra["conditional_id"] = entry.assigned_id
        if entry.full_url and entry.assigned_id:
            mapping[entry.full_url] = f"{target.res_type}/{entry.assigned_id}"
    return mapping


def _identity(services: Services, info: RequestInfo, conn: Connection, entry: Entry) -> str | None:
    """'Type/id' of the resource a writing entry acts on, its conditional criteria resolved
    against what is stored now (among what the caller may see); None for a read, and for a
    conditional DELETE or PATCH that matches nothing."""
    if entry.method in ("GET", "HEAD"):
        return None
    target = _parse_target(entry.url)
    res_id = entry.assigned_id if entry.method in ("POST", "PUT") else target.res_id
    if res_id is None and target.query is not None:
        what = f"Conditional {entry.method.lower()}"
        scope = services.policy.scope(info.principal)
        try:
            found = match_one(services, conn, scope, target.res_type, target.query, what)
        except FhirError as exc:
            raise _for_entry(entry, exc) from exc
        res_id = found.res_id if found else None
    return f"{target.res_type}/{res_id}" if res_id else None


def _refuse_overlaps(services: Services, info: RequestInfo, conn: Connection, entries: list[Entry]) -> None:
    """R4 (http.html#trules): identities that overlap among the DELETE, POST and PUT/PATCH
    entries, conditional ones resolved, SHALL fail the transaction; GETs may read anything."""
    by_identity: dict[str, list[Entry]] = {}
    for entry in entries:
        identity = _identity(services, info, conn, entry)
        if identity is not None:
            by_identity.setdefault(identity, []).append(entry)
    issues = [
        Issue(
            "error",
            "invalid",
            f"{' and '.join(e.label for e in group)} act on {identity}: "
            "a transaction may write a resource only once",
            [f"Bundle.entry[{e.index}]" for e in group],
        )
        for identity, group in by_identity.items()
        if len(group) > 1
    ]
    if issues:
        raise BadRequest(issues[0].diagnostics, issues=issues)


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def _resolve_conditional_refs(services: Services, info: RequestInfo, conn: Connection, entry: Entry) -> None:
    """Reference.reference of the form 'Type?criteria' becomes the one resource it matches
    among those the caller may see."""
    scope = services.policy.scope(info.principal)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k == "reference" and isinstance(v, str) and "?" in v and "/" not in v.split("?", 1)[0]:
                    res_type, query = v.split("?", 1)
                    check_type(res_type)
                    found = match_one(services, conn, scope, res_type, query, f"Conditional reference '{v}'")
                    if found is None:
                        raise BadRequest(f"Conditional reference '{v}' matches no {res_type}")
                    out[k] = f"{res_type}/{found.res_id}"
                else:
                    out[k] = walk(v)
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    try:
        entry.resource = walk(entry.resource) if entry.resource is not None else None
    except FhirError as exc:
        raise _for_entry(entry, exc) from exc


def _execute(services: Services, info: RequestInfo, entry: Entry, conn: Connection) -> Result:
    target = _parse_target(entry.url)
    sub = replace(info, if_match=entry.if_match, if_none_exist=None, if_none_match=entry.if_none_match)
    if entry.method == "POST":
        if entry.if_none_exist and entry.assigned_id is None:
            sub = replace(sub, if_none_exist=entry.if_none_exist)
        return create_mod.create(
            services, sub, target.res_type, entry.resource, conn, res_id=entry.assigned_id
        )
    if entry.method == "PUT":
        if target.res_id is None and "conditional_id" in entry.extra:
            res = dict(entry.resource)
            res.setdefault("id", entry.extra["conditional_id"])
            return update_mod.update(services, sub, target.res_type, res["id"], res, conn)
        return update_mod.update(
            services,
            sub,
            target.res_type,
            target.res_id,
            entry.resource,
            conn,
            criteria=target.query if target.res_id is None else None,
        )
    if entry.method == "PATCH":
        operations = _patch_operations(entry.resource)
        return patch_mod.patch(
            services,
            sub,
            target.res_type,
            target.res_id,
            operations,
            conn,
            criteria=target.query if target.res_id is None else None,
        )
    if entry.method == "DELETE":
        return delete_mod.delete(
            services,
            sub,
            target.res_type,
            target.res_id,
            conn,
            criteria=target.query if target.res_id is None else None,
        )
    # GET / HEAD: read, vread or search.
    if target.version is not None:
        return read_mod.vread(services, sub, target.res_type, target.res_id, target.version, conn)
    if target.res_id is not None:
        return read_mod.read(services, sub, target.res_type, target.res_id, conn)
    return search(services, sub, target.res_type, parse_qsl(target.query or "", keep_blank_values=True))


def _patch_operations(resource: dict[str, Any] | None) -> Any:
    """In a Bundle a JSON Patch travels as a Binary resource (base64 data) per the spec."""
    if resource and resource.get("resourceType") == "Binary" and resource.get("data"):
        try:
            return orjson.loads(base64.b64decode(resource["data"]))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BadRequest("The Binary of a PATCH entry does not hold a JSON Patch document") from exc
    raise BadRequest(
        "A PATCH entry carries its JSON Patch as a Binary resource (contentType application/json-patch+json)"
    )


def _for_entry(entry: Entry, exc: FhirError) -> FhirError:
    """The same error, its messages and expressions prefixed by the entry they come from."""
    issues = [
        Issue(
            i.severity,
            i.code,
            f"{entry.label}: {i.diagnostics}",
            [f"Bundle.entry[{entry.index}]", *i.expression],
        )
        for i in exc.issues
    ]
    err = FhirError(
        issues[0].diagnostics if issues else entry.label, status=exc.status, code=exc.code, issues=issues
    )
    return err


def _outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def _response_entry(info: RequestInfo, entry: Entry) -> dict[str, Any]:
    result = entry.result or Result(status=200)
    response: dict[str, Any] = {"status": f"{result.status} {_REASON.get(result.status, '')}".strip()}
    out: dict[str, Any] = {}
    stored = result.stored
    if stored is not None:
        out["fullUrl"] = f"{info.base_url}/{stored.res_type}/{stored.res_id}"
        if entry.method in ("POST", "PUT", "PATCH") or (entry.method == "DELETE" and stored.deleted):
            response["location"] = f"{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"
        response["etag"] = stored.etag
        response["lastModified"] = format_instant(stored.last_updated)
    if result.status >= 400:
        response["outcome"] = result.resource
    elif result.resource is not None and info.prefer_return != "minimal":
        out["resource"] = result.resource
    out["response"] = response
    return out
