"""What a request is, in words of a bounded vocabulary: its FHIR interaction, resource type,
operation, caller and search parameter names, and how long it has run.

The request log and the metrics both describe requests with these, so they must never carry
what a client wrote freely: a metric label made of raw paths or ids grows without end (every id
a new time series), and a log line made of values may hold a person's name. So a resource type is
named only when the server serves it, an operation only when it is registered, a parameter only
when each part of its name is a known search parameter, modifier or type; anything else is
"unknown" (or "?"), never the text itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from fhirsrv.access.principal import Principal
from fhirsrv.api.current import current_flask_app, current_request, request_globals
from fhirsrv.interactions.context import Services
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.parameters import CONTROL

# A resource type named in the URL that the server does not serve.
UNKNOWN = "unknown"
# A parameter name with a part outside the vocabulary.
UNKNOWN_PARAMETER = "?"
# Parameter names kept per request line (a search has at most FHIRSRV_MAX_SEARCH_PARAMS anyway).
MAX_PARAMETERS = 40
READING = ("GET", "HEAD")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Interactions whose query (or POST _search form) holds search or history criteria.
CRITERIA_INTERACTIONS = frozenset(
    {"search-type", "search-system", "history-instance", "history-type", "history-system", "update", "patch", "delete"}
)
# Parts of parameter names besides the search parameters' own codes and the types.
_RESULT_PARAMETERS = CONTROL | {
    "_id", "_lastUpdated", "_has", "_tag", "_profile", "_security", "_source", "_list", "_text",
    "_content", "_query", "_since", "_at",
}  # fmt: skip
_MODIFIERS = frozenset(
    {
        "exact", "contains", "missing", "text", "not", "below", "above", "in", "not-in", "of-type",
        "identifier", "iterate", "near", "code-text", "text-advanced", "type",
    }
)  # fmt: skip
_BY_ENDPOINT = {
    "fhir.metadata": "capabilities",
    "fhir.system_history": "history-system",
    "fhir.type_search_post": "search-type",
    "fhir.type_history": "history-type",
    "fhir.instance_history": "history-instance",
    "fhir.instance_vread": "vread",
    "fhir.instance_operation": "operation",
    "auth_token": "token",
    "auth_token_alias": "token",
    "auth_jwks": "jwks",
    "auth_smart": "smart-configuration",
    # The public pages (fhirsrv/web): one interaction name each, so metrics tell them apart.
    "web.search_page": "web-search",
    "web.offer_page": "web-offer",
    "web.structure_page": "web-structure",
    "web.apply_page": "web-apply",  # the form (GET) and its sending (POST): the method tells them apart
    "web.apply_sent": "web-apply-sent",
    "web.commune_suggestions": "web-communes",
    "web.departement_outlines": "web-outlines",
    "web.static": "static",
    "static": "static",
}
_WRITES = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class RequestFacts:
    interaction: str
    # "" when the URL names none; UNKNOWN when it names one the server does not serve.
    resource_type: str
    # A registered operation's name ("$expand"), or None.
    operation: str | None


def install(app: Flask, services: Services) -> None:
    """Start each request's clock before any other hook runs (register this first)."""
    operations = frozenset(op.name for op in services.operations.registered())
    app.extensions["fhirsrv.operation_names"] = operations

    @app.before_request
    def _start_clock() -> None:
        request_globals().fhirsrv_started = time.perf_counter()


def name_interaction(interaction: str) -> None:
    """For a route that learns its interaction from the body (a Bundle: batch or transaction)."""
    request_globals().fhirsrv_interaction = interaction


def elapsed_seconds() -> float:
    started = request_globals().get("fhirsrv_started")
    return 0.0 if started is None else time.perf_counter() - started


def client_label() -> str:
    """The OAuth client id of the request's token (an opaque uuid), else "anonymous"; never a
    client's display name (an administrator may have named it after a person)."""
    principal = request_globals().get("fhirsrv_principal")
    if isinstance(principal, Principal) and principal.client_id:
        return principal.client_id
    return "anonymous"


def method_label() -> str:
    method: str = current_request().method
    return method if method in METHODS else "OTHER"


def describe() -> RequestFacts:
    """This request's interaction, resource type and operation (worked out once a request)."""
    globals_ = request_globals()  # once, not per use
    known: RequestFacts | None = globals_.get("fhirsrv_facts")
    if known is None:
        known = globals_.fhirsrv_facts = _described()
    return known


def _described() -> RequestFacts:
    req = current_request()
    args: Mapping[str, Any] = req.view_args or {}
    res_type = args.get("res_type")
    res_id = args.get("res_id")
    operation = args.get("op")
    interaction = request_globals().get("fhirsrv_interaction") or _interaction(req.endpoint, req.method, args)
    if isinstance(res_type, str) and res_type.startswith("$"):  # /fhir/$name: a system operation
        operation, res_type = res_type, None
    elif isinstance(res_id, str) and res_id.startswith("$"):  # /fhir/Type/$name
        operation = res_id
    return RequestFacts(interaction, _type_label(res_type), _operation_label(operation))


def _interaction(endpoint: str | None, method: str, args: Mapping[str, Any]) -> str:
    if method == "OPTIONS":
        return "preflight"
    if endpoint in _BY_ENDPOINT:
        return _BY_ENDPOINT[endpoint]
    reading = method in READING
    res_type, res_id = str(args.get("res_type", "")), str(args.get("res_id", ""))
    if endpoint == "fhir.system":
        return "search-system" if reading else "batch"  # a transaction is named by the route
    if endpoint == "fhir.type_level":
        if res_type.startswith("$"):
            return "operation"
        return "search-type" if reading else _WRITES.get(method, "other")
    if endpoint == "fhir.instance":
        if res_id.startswith("$"):
            return "operation"
        if reading:
            return "read"
        return _WRITES.get(method, "other") if method != "POST" else "other"
    return str(current_flask_app().extensions.get("fhirsrv.endpoint_interactions", {}).get(endpoint, "other"))


def name_endpoint(app: Flask, endpoint: str, interaction: str) -> None:
    """An endpoint outside the FHIR API (health, metrics) names its own interaction."""
    app.extensions.setdefault("fhirsrv.endpoint_interactions", {})[endpoint] = interaction


def _type_label(res_type: object) -> str:
    if not isinstance(res_type, str) or not res_type:
        return ""
    return res_type if res_type in SUPPORTED_TYPES else UNKNOWN


def _operation_label(operation: object) -> str | None:
    if not isinstance(operation, str):
        return None
    name = operation.removeprefix("$")
    return f"${name}" if name in current_flask_app().extensions.get("fhirsrv.operation_names", ()) else UNKNOWN


def parameter_names(services: Services, interaction: str) -> list[str]:
    """The names of the request's search or history criteria, never their values (a searched
    name is a person's); a name with a part the server does not know is "?"."""
    if interaction not in CRITERIA_INTERACTIONS:
        return []
    names: list[str] = list(current_request().args.keys())
    if current_request().endpoint == "fhir.type_search_post" and current_request().mimetype == "application/x-www-form-urlencoded":
        # A body the route refused (too large) raises here: its names are not needed.
        with contextlib.suppress(HTTPException):
            names.extend(current_request().form.keys())
    vocabulary = _vocabulary(services)
    kept: list[str] = []
    for name in names:
        label = name if _known(name, vocabulary) else UNKNOWN_PARAMETER
        if label not in kept:
            kept.append(label)
        if len(kept) >= MAX_PARAMETERS:
            break
    return kept


def _known(name: str, vocabulary: frozenset[str]) -> bool:
    parts = name.replace(".", ":").split(":")
    return 0 < len(parts) <= 12 and all(part in vocabulary for part in parts)


_cached: tuple[object, frozenset[str]] | None = None


def _vocabulary(services: Services) -> frozenset[str]:
    """Every search parameter code of every type, the result parameters, modifiers and types;
    rebuilt when the registry is (a SearchParameter stored at run time)."""
    global _cached
    registry = services.search.registry
    if _cached is not None and _cached[0] is registry:
        return _cached[1]
    codes: Iterable[str] = (p.code for t in SUPPORTED_TYPES for p in registry.for_type(t))
    vocabulary = frozenset(codes) | _RESULT_PARAMETERS | _MODIFIERS | frozenset(SUPPORTED_TYPES)
    _cached = (registry, vocabulary)
    return vocabulary
