"""URL map: each FHIR REST URL pattern to its interaction or operation.

HTTP only: who may see or write what is decided by the access policy inside the
interactions, for every path alike (a URL here, a Bundle entry, an operation)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response
from werkzeug.datastructures import MultiDict

from fhirsrv.api import caller, negotiation, request_facts
from fhirsrv.api.current import current_flask_app, current_request
from fhirsrv.errors import BadRequest, MethodNotAllowed, NotFound
from fhirsrv.interactions import bundle, capabilities, history, operations, read
from fhirsrv.interactions import create as create_mod
from fhirsrv.interactions import delete as delete_mod
from fhirsrv.interactions import patch as patch_mod
from fhirsrv.interactions import update as update_mod
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_type, parse_json, parse_resource
from fhirsrv.interactions.search import search

fhir = Blueprint("fhir", __name__)

# HEAD is a GET without its body (Flask routes it with GET): never let it fall through to the
# write branches of a handler (a HEAD used to reach DELETE).
READING = ("GET", "HEAD")
# Parameters that shape the answer rather than select resources.
_PRESENTATION = {"_format", "_pretty"}


def services() -> Services:
    return current_flask_app().extensions["fhirsrv"]


# The request's FHIR base, kept in its environ: the route and the rendering both ask.
_BASE_URL = "fhirsrv.base_url"


def base_url() -> str:
    """The FHIR base clients reach: FHIRSRV_BASE_URL, else the request's root and /fhir."""
    environ = current_request().environ
    known: str | None = environ.get(_BASE_URL)
    if known is None:
        configured = services().settings.base_url
        known = configured.rstrip("/") if configured else _request_root().rstrip("/") + "/fhir"
        environ[_BASE_URL] = known
    return known


# Request roots worked out lately (see _request_root); a client writes the Host, so bounded.
ROOTS_KEPT = 64
_ROOT_PARTS = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME")
_roots: dict[tuple[object, ...], str] = {}


def _request_root() -> str:
    """`request.url_root`, kept by the five environ values werkzeug makes it of (after ProxyFix
    when proxies are trusted): working it out costs two IRI conversions, at every request."""
    environ = current_request().environ
    key = tuple(environ.get(k) for k in _ROOT_PARTS)
    root = _roots.get(key)
    if root is None:
        root = current_request().url_root
        if len(_roots) >= ROOTS_KEPT:
            _roots.clear()
        _roots[key] = root
    return root


def request_info() -> RequestInfo:
    req = current_request()
    # The headers straight from the environ, where `request.headers` finds them too.
    environ = req.environ
    prefs = negotiation.prefer(req)
    handling = prefs.get("handling")
    if handling not in ("lenient", "strict"):
        handling = None  # not stated: each interaction's default (search: strict)
    return RequestInfo(
        base_url=base_url(),
        principal=caller.principal(),
        meter=caller.meter(),
        prefer_return=prefs.get("return"),
        prefer_handling=handling,
        if_match=environ.get("HTTP_IF_MATCH"),
        if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        if_modified_since=negotiation.if_modified_since(req),
        if_none_exist=environ.get("HTTP_IF_NONE_EXIST"),
        lifecycle_repair=environ.get("HTTP_X_LIFECYCLE_REPAIR"),
    )


def query_params(source: MultiDict | None = None) -> list[tuple[str, str]]:
    args = source if source is not None else current_request().args
    return [(k, v) for k, v in args.items(multi=True) if k not in _PRESENTATION]


def answer(result: Result, *, shape: bool = True) -> Response:
    return negotiation.render(result, negotiation.presentation(current_request()), base_url(), shape_body=shape)


def _criteria() -> str | None:
    params = query_params()
    return urlencode(params) if params else None


def _search(res_type: str | None, params: list[tuple[str, str]]) -> Response:
    return answer(search(services(), request_info(), res_type, params), shape=False)


# ------------------------------------------------------------------------------------ system


@fhir.get("/metadata")
def metadata() -> Response:
    return answer(capabilities.capability_statement(services(), request_info()))


@fhir.route("/", methods=["GET", "POST"], strict_slashes=False)
def system() -> Response:
    if current_request().method in READING:
        return _search(None, query_params())
    negotiation.check_content_type(current_request())
    body = parse_json(current_request().get_data())
    if isinstance(body, dict) and body.get("type") == "transaction":
        request_facts.name_interaction("transaction")
    return answer(bundle.process(services(), request_info(), body))


@fhir.get("/_history")
def system_history() -> Response:
    return answer(history.history(services(), request_info(), None, None, query_params()))


# -------------------------------------------------------------------------------------- type


@fhir.route("/<res_type>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def type_level(res_type: str) -> Response:
    if res_type.startswith("$"):
        return _operation(res_type[1:], None, None)
    info = request_info()
    if current_request().method in READING:
        check_type(res_type)
        return _search(res_type, query_params())
    check_type(res_type, writable=True)  # a read-only type answers 405 before its body is read
    _credentials_first(info, res_type)
    if current_request().method == "POST":
        negotiation.check_content_type(current_request())
        res = parse_resource(current_request().get_data(), res_type)
        return answer(create_mod.create(services(), info, res_type, res))
    criteria = _criteria()
    if criteria is None:
        raise MethodNotAllowed(
            f"{current_request().method} on {res_type} needs search criteria (a conditional {current_request().method})",
            headers={"Allow": "GET, HEAD, POST"},
        )
    if current_request().method == "PUT":
        negotiation.check_content_type(current_request())
        res = parse_resource(current_request().get_data(), res_type)
        return answer(update_mod.update(services(), info, res_type, None, res, criteria=criteria))
    if current_request().method == "PATCH":
        negotiation.check_content_type(current_request(), patch=True)
        return answer(
            patch_mod.patch(
                services(), info, res_type, None, parse_json(current_request().get_data()), criteria=criteria
            )
        )
    if current_request().method != "DELETE":
        raise MethodNotAllowed(f"{current_request().method} is not supported on {res_type}")
    return answer(delete_mod.delete(services(), info, res_type, None, criteria=criteria))


@fhir.post("/<res_type>/_search")
def type_search_post(res_type: str) -> Response:
    check_type(res_type)
    if current_request().mimetype != "application/x-www-form-urlencoded":
        raise BadRequest("POST _search takes an application/x-www-form-urlencoded body", status=415)
    params = query_params() + query_params(current_request().form)
    return _search(res_type, params)


@fhir.get("/<res_type>/_history")
def type_history(res_type: str) -> Response:
    return answer(history.history(services(), request_info(), res_type, None, query_params()))


# ---------------------------------------------------------------------------------- instance


@fhir.route("/<res_type>/<res_id>", methods=["GET", "PUT", "DELETE", "PATCH", "POST"])
def instance(res_type: str, res_id: str) -> Response:
    if res_id.startswith("$"):
        return _operation(res_id[1:], res_type, None)
    method = current_request().method
    if method not in READING:
        check_type(res_type, writable=True)
    if method == "POST":
        raise MethodNotAllowed(
            f"POST is not allowed on {res_type}/{res_id}; use PUT to update it",
            headers={"Allow": "GET, HEAD, PUT, PATCH, DELETE"},
        )
    info = request_info()
    if method in READING:
        return answer(read.read(services(), info, res_type, res_id))
    _credentials_first(info, res_type, res_id)
    if current_request().method == "PUT":
        negotiation.check_content_type(current_request())
        res = parse_resource(current_request().get_data(), res_type)
        return answer(update_mod.update(services(), info, res_type, res_id, res))
    if current_request().method == "PATCH":
        negotiation.check_content_type(current_request(), patch=True)
        return answer(patch_mod.patch(services(), info, res_type, res_id, parse_json(current_request().get_data())))
    if current_request().method != "DELETE":
        raise MethodNotAllowed(f"{current_request().method} is not supported on {res_type}/{res_id}")
    return answer(delete_mod.delete(services(), info, res_type, res_id))


@fhir.get("/<res_type>/<res_id>/_history")
def instance_history(res_type: str, res_id: str) -> Response:
    return answer(history.history(services(), request_info(), res_type, res_id, query_params()))


@fhir.get("/<res_type>/<res_id>/_history/<version>")
def instance_vread(res_type: str, res_id: str, version: str) -> Response:
    return answer(read.vread(services(), request_info(), res_type, res_id, version))


@fhir.route("/<res_type>/<res_id>/<op>", methods=["GET", "POST"])
def instance_operation(res_type: str, res_id: str, op: str) -> Response:
    if not op.startswith("$"):
        raise NotFound(f"Unknown path segment '{op}'")
    return _operation(op[1:], res_type, res_id)


# HTTP method: (the interaction as the audit names it, as a SMART scope letter).
_WRITE_INTERACTIONS = {"POST": ("create", "c"), "PUT": ("update", "u"), "PATCH": ("patch", "u"), "DELETE": ("delete", "d")}


def _credentials_first(info: RequestInfo, res_type: str, res_id: str | None = None) -> None:
    """Refuse a write the token alone refuses (401 for anonymous callers, 403 for a scope or
    role that may never do it) before its body is parsed: an anonymous caller learns nothing
    from its body being judged, and a refused write costs no parsing. The refusal is audited
    as the interaction's own would be."""
    interaction, letter = _WRITE_INTERACTIONS[current_request().method]
    criteria = _criteria()
    if res_id is not None:
        target = f"{res_type}/{res_id}"
    else:
        target = f"{res_type}?{criteria}" if criteria is not None and current_request().method != "POST" else res_type
    with audited(services(), info, interaction, target):
        services().policy.check_write_intent(info.principal, res_type, letter)


def _operation(name: str, res_type: str | None, res_id: str | None) -> Response:
    if current_request().method not in ("GET", "POST"):
        raise MethodNotAllowed(
            f"Operation ${name} is invoked with GET or POST", headers={"Allow": "GET, POST"}
        )
    if res_type is not None:
        check_type(res_type)
    op = services().operations.resolve(name, res_type, res_id is not None, current_request().method)
    args = query_params()
    if current_request().method == "POST":
        negotiation.check_content_type(current_request())
        body = parse_json(current_request().get_data())
        if not isinstance(body, dict):
            raise BadRequest("An operation body is a Parameters resource (or the resource it acts on)")
        call = operations.OperationCall.from_body(res_type, res_id, body, args)
    else:
        call = operations.OperationCall.from_query(res_type, res_id, args)
    return answer(services().operations.invoke(services(), request_info(), op, call))
