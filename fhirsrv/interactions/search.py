"""Type- and system-level search: a searchset Bundle with links, totals and includes.

Entries splice the stored JSON as it is (orjson.Fragment); a resource is parsed only when the
client asked for another shape (_summary, _elements).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhirsrv.errors import BadRequest
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.shaping import parse_summary, shape
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource

# R4's extension for the distance of a match to the `near` point, on Bundle.entry.search.
LOCATION_DISTANCE = "http://hl7.org/fhir/StructureDefinition/location-distance"


def _entry(
    info: RequestInfo,
    stored: StoredResource,
    mode: str,
    summary: str | None,
    elements: list[str] | None,
    distance_km: float | None = None,
) -> dict[str, Any]:
    if summary or elements:
        body: Any = shape(loads(stored.content), summary, elements)
    else:
        body = orjson.Fragment(stored.content)
    search_info: dict[str, Any] = {"mode": mode}
    if distance_km is not None:
        # So a client can say "3.2 km" without computing it: to 10 m, about a building's size.
        value = {
            "value": round(distance_km, 2),
            "unit": "km",
            "system": "http://unitsofmeasure.org",
            "code": "km",
        }
        search_info["extension"] = [{"url": LOCATION_DISTANCE, "valueDistance": value}]
    return {
        "fullUrl": f"{info.base_url}/{stored.res_type}/{stored.res_id}",
        "resource": body,
        "search": search_info,
    }


def _link(
    info: RequestInfo, res_type: str | None, params: list[tuple[str, str]], cursor: str | None = None
) -> str:
    query = list(params) + ([("_cursor", cursor)] if cursor else [])
    path = f"{info.base_url}/{res_type}" if res_type else info.base_url
    return f"{path}?{urlencode(query)}" if query else path


def _named_types(params: list[tuple[str, str]]) -> list[str]:
    return [t.strip() for name, value in params if name == "_type" for t in value.split(",") if t.strip()]


def search(
    services: Services, info: RequestInfo, res_type: str | None, params: list[tuple[str, str]]
) -> Result:
    """Every search — a GET, a POST _search, a batch entry — comes through here, and here the
    access policy decides: the types the caller may search at all, then, inside the engine,
    which of their rows (and of what chains, `_has` and includes reach) it may see."""
    engine = services.search
    policy = services.policy
    sealed = [v for k, v in params if k == "_cursor"]
    if sealed:
        opened = services.cursors.open(sealed[-1])
        params = [(k, v) for k, v in params if k != "_cursor"] + [("_cursor", opened or "")]
    # Unknown parameters are refused unless the client asks for lenient handling (R4 leaves the
    # default to the server): ignoring one answers a broader search than the one asked, and a
    # client that does not read the outcome entry refers a patient to the wrong département.
    strict = info.prefer_handling != "lenient"
    with read_transaction(services.engine) as conn:
        # The parameters are judged by the registry as the database defines it now: a
        # SearchParameter another worker process wrote is known here too.
        engine.ensure_current(conn)
        request = engine.prepare(res_type, params, strict=strict, base_url=info.base_url)
        named = [res_type] if res_type else _named_types(params)
        for searched in named:
            policy.check_read(info.principal, searched, "s")
        summary = parse_summary(request.summary)
        if summary == "text" and request.elements:
            raise BadRequest("_summary and _elements cannot be combined")
        page = engine.execute(conn, request, policy.scope(info.principal))
    matches = policy.as_shown(info.principal, page.matches)
    included = policy.as_shown(info.principal, page.included)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    links = [
        {"relation": "self", "url": _link(info, res_type, request.used, sealed[-1] if sealed else None)},
        {"relation": "first", "url": _link(info, res_type, request.used)},
    ]
    if page.previous_cursor:
        links.append(
            {
                "relation": "previous",
                "url": _link(info, res_type, request.used, services.cursors.seal(page.previous_cursor)),
            }
        )
    if page.next_cursor:
        next_url = _link(info, res_type, request.used, services.cursors.seal(page.next_cursor))
        links.append({"relation": "next", "url": next_url})
    bundle["link"] = links
    entries = [
        _entry(info, s, "match", summary, request.elements, page.distances.get(s.rid)) for s in matches
    ]
    entries += [_entry(info, s, "include", summary, request.elements) for s in included]
    if request.issues:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [i.to_fhir() for i in request.issues],
                },
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return Result(status=200, resource=bundle, entries=(*matches, *included))
