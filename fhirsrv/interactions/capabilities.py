"""The CapabilityStatement, generated from what the server really registers.

Types and interactions come from interactions/resources.py, search parameters from the live
search registry (standard, SOS and any SearchParameter posted at run time), operations from the
operation registry, supported profiles from the StructureDefinitions stored in the database.
Nothing here is a hand-kept list of features.

Built once, then served as stored bytes until what it shows changes: clients fetch it at every
start (fhirpy, HAPI's client), it is about 170 KB, and building it took 1.7 ms of CPU and three
queries. What may change under a running server is the stored SearchParameters and
StructureDefinitions, written through any worker process: one query fingerprints both at each
request (`_generations`), as the search registry does for its own (search/registry.py), so a
profile or parameter written through one worker is in every worker's next statement.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from fhirsrv import FHIR_VERSION, __version__
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationDef
from fhirsrv.interactions.resources import SERVER_WRITTEN_TYPES, SUPPORTED_TYPES
from fhirsrv.resource_types import OWNED_TYPES
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import format_instant, loads, utcnow
from fhirsrv.storage.schema import live, resource

_WRITE = ("create", "update", "patch", "delete")
_READ = ("read", "vread", "history-instance", "history-type", "search-type")
# What a syncing client must know of the history (interactions/history.py).
_HISTORY = (
    "Every committed change (create, update, delete, and an entry entering or leaving the caller's "
    "view), in commit order: oldest first with _since or _sort=_lastUpdated, newest first otherwise. "
    "_since is the commit instant; Bundle.meta.lastUpdated is the instant up to which the answer is "
    "complete: pass it as the next _since to miss nothing. An entry that leaves the caller's view "
    "(delisted, withdrawn, deleted) is an entry without a resource, request.method DELETE."
)
_DOCUMENTED = {"history-type": _HISTORY, "history-system": _HISTORY}


def _interaction(code: str) -> dict[str, str]:
    entry = {"code": code}
    if code in _DOCUMENTED:
        entry["documentation"] = _DOCUMENTED[code]
    return entry


# What a client needs to know of the types it owns (resource_types.OWNED_TYPES).
_DOCUMENTATION = {
    "Subscription": (
        "R4 Subscription, channel rest-hook only; criteria: a search of a directory type, run as its "
        "owner. Visible to the client that created it only (needs a token; created by POST). "
        "Notifications are the R4 notification Bundles of the HL7 Subscriptions R5 Backport IG "
        "(handshake on creation, event numbers for gap detection); payload application/fhir+json "
        "(full-resource, or id-only with the backport-payload-content extension) or none (empty)."
    )
}


# The stored types the statement shows: search parameters and constraint profiles.
_CONFORMANCE = ("SearchParameter", "StructureDefinition")
# Built once: constructing the expression cost more than the query it runs.
_GENERATIONS_QUERY = (
    select(resource.c.res_type, func.count(), func.sum(resource.c.version_id), func.max(resource.c.last_updated))
    .where(resource.c.res_type.in_(_CONFORMANCE))
    .group_by(resource.c.res_type)
)


def _generations(conn: Connection) -> dict[str, tuple[Any, ...]]:
    """Per type of _CONFORMANCE, the fingerprint `registry.stored_generation` computes for
    SearchParameters (count, sum of versions, last change: every write changes it), in one
    query for both."""
    rows = conn.execute(_GENERATIONS_QUERY)
    found = {res_type: (count, versions, last) for res_type, count, versions, last in rows}
    return {res_type: found.get(res_type, (0, None, None)) for res_type in _CONFORMANCE}


def _profiles_by_type(conn: Connection) -> dict[str, list[str]]:
    """Stored constraint profiles per type."""
    by_type: dict[str, list[str]] = {}
    rows = conn.execute(select(resource.c.content).where(resource.c.res_type == "StructureDefinition", live(resource)))
    for (content,) in rows:
        sd = loads(content)
        if sd.get("kind") == "resource" and sd.get("derivation") == "constraint" and sd.get("url"):
            by_type.setdefault(sd.get("type", ""), []).append(sd["url"])
    for urls in by_type.values():
        urls.sort()
    return by_type


def _search_params(services: Services, res_type: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    params, includes, revincludes = [], [], []
    for p in services.search.registry.for_type(res_type):
        entry = {"name": p.code, "type": p.type}
        if getattr(p, "url", None):
            entry["definition"] = p.url
        if getattr(p, "description", None):
            entry["documentation"] = p.description
        params.append(entry)
        if p.type == "reference":
            includes.append(f"{res_type}:{p.code}")
    for other in SUPPORTED_TYPES:
        for p in services.search.registry.for_type(other):
            if p.type == "reference" and (not getattr(p, "target", None) or res_type in p.target):
                revincludes.append(f"{other}:{p.code}")
    return sorted(params, key=lambda e: e["name"]), sorted(set(includes)), sorted(set(revincludes))


def _operation_entry(op: OperationDef) -> dict[str, Any]:
    entry = {"name": op.name, "definition": op.definition or f"urn:fhirsrv:operation:{op.name}"}
    if op.documentation:
        entry["documentation"] = op.documentation
    return entry


def capability_statement(services: Services, info: RequestInfo) -> Result:
    """The statement for the base the request came to (its links and OAuth endpoints name it),
    rebuilt only when a stored SearchParameter or StructureDefinition changed."""
    with read_transaction(services.engine) as conn:
        generations = _generations(conn)
        services.search.ensure_current(conn, generations["SearchParameter"])
        key = (tuple(generations.values()), info.base_url)
        current = services.capability_cache.get("current")
        if current is not None and current[0] == key:
            return Result(status=200, resource=current[1])
        profiles = _profiles_by_type(conn)
    statement = orjson.Fragment(orjson.dumps(_build(services, info, profiles)))
    # One assignment: a concurrent request reads the old pair or the new one, never half.
    services.capability_cache["current"] = (key, statement)
    return Result(status=200, resource=statement)


def _build(services: Services, info: RequestInfo, profiles: dict[str, list[str]]) -> dict[str, Any]:
    ops = services.operations.registered()
    resources = []
    for res_type in SUPPORTED_TYPES:
        interactions = _READ if res_type in SERVER_WRITTEN_TYPES else _READ + _WRITE
        params, includes, revincludes = _search_params(services, res_type)
        entry: dict[str, Any] = {
            "type": res_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
        }
        if profiles.get(res_type):
            entry["supportedProfile"] = profiles[res_type]
        if res_type in _DOCUMENTATION:
            entry["documentation"] = _DOCUMENTATION[res_type]
        entry.update(
            {
                "interaction": [_interaction(code) for code in interactions],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": res_type not in SERVER_WRITTEN_TYPES + OWNED_TYPES,
                "conditionalCreate": res_type not in SERVER_WRITTEN_TYPES,
                "conditionalRead": "full-support",
                "conditionalUpdate": res_type not in SERVER_WRITTEN_TYPES,
                "conditionalDelete": "single" if res_type not in SERVER_WRITTEN_TYPES else "not-supported",
                "referencePolicy": ["literal", "local"],
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
            }
        )
        type_ops = [_operation_entry(op) for op in ops if res_type in op.resource_types]
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "Regional directory of cancer supportive care (SOS), ROR-compatible",
        "resource": resources,
        "interaction": [_interaction(c) for c in ("transaction", "batch", "search-system", "history-system")],
    }
    system_ops = [_operation_entry(op) for op in ops if op.system_level]
    if system_ops:
        rest["operation"] = system_ops
    if services.security_section is not None:
        rest["security"] = services.security_section(info.base_url)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(utcnow()),
        "publisher": "fhirsrv",
        "kind": "instance",
        "software": {"name": "fhirsrv", "version": __version__},
        "implementation": {"description": "fhirsrv SOS directory", "url": info.base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
