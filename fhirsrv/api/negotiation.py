"""Content negotiation and response rendering: Accept/_format, Prefer, _pretty, _summary,
_elements, and the ETag / Last-Modified / Location headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from flask import Request, Response, current_app
from werkzeug.datastructures import Headers
from werkzeug.http import http_date, parse_date
from werkzeug.urls import iri_to_uri

from fhirsrv.errors import NotAcceptable, UnsupportedMediaType
from fhirsrv.interactions.context import Result
from fhirsrv.interactions.shaping import parse_elements, parse_summary, shape
from fhirsrv.storage.jsonfmt import loads

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
_XML_FORMATS = {"xml", "application/xml", "application/fhir+xml", "application/xml+fhir", "text/xml"}
_ANY = {"*/*", "application/*", "text/html", "text/*"}
PATCH_JSON = "application/json-patch+json"
_PRODUCES = "fhirsrv_produces"
_PREFER = "fhirsrv.prefer"
# Accept headers that need no parsing: one media type this server produces (or any), no quality.
_PLAINLY_ACCEPTED = frozenset(_JSON_FORMATS | _ANY)
View = TypeVar("View", bound=Callable[..., object])


def produces(*mimetypes: str) -> Callable[[View], View]:
    """Marks a view that answers in other formats besides FHIR JSON (the NDJSON files of a
    bulk export): an Accept naming one of them is not refused with 406 there."""

    def mark(view: View) -> View:
        setattr(view, _PRODUCES, frozenset(m.lower() for m in mimetypes))
        return view

    return mark


def _produced_by_view(request: Request) -> frozenset[str]:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, _PRODUCES, frozenset())


@dataclass(frozen=True)
class Presentation:
    """How the client wants its answer shaped."""

    pretty: bool = False
    summary: str | None = None
    elements: list[str] | None = None
    prefer_return: str | None = None


def check_accept(request: Request) -> None:
    wanted = request.args.get("_format")
    if wanted:
        fmt = wanted.split(";")[0].strip().lower().replace(" ", "+")  # "+" arrives as a space
        if fmt in _JSON_FORMATS:
            return
        raise NotAcceptable(f"_format '{wanted}' is not supported; this server speaks application/fhir+json")
    header = request.headers.get("Accept")
    if header is not None and header.strip().lower() in _PLAINLY_ACCEPTED:
        return
    accept = request.accept_mimetypes
    if not accept or not list(accept.values()):
        return
    also = _produced_by_view(request)
    for mimetype, quality in accept:
        if quality > 0 and (mimetype.lower() in _JSON_FORMATS or mimetype.lower() in _ANY or mimetype.lower() in also):
            return
    raise NotAcceptable(
        f"Accept '{request.headers.get('Accept')}' names no format this server produces (application/fhir+json)"
    )


def check_content_type(request: Request, *, patch: bool = False) -> None:
    mimetype = (request.mimetype or "").lower()
    if patch:
        if mimetype == PATCH_JSON:
            return
        raise UnsupportedMediaType(f"PATCH accepts {PATCH_JSON} (JSON Patch), not '{mimetype or 'none'}'")
    if mimetype in _JSON_FORMATS:
        return
    if mimetype in _XML_FORMATS:
        raise UnsupportedMediaType("XML is not supported; send application/fhir+json")
    raise UnsupportedMediaType(
        f"Content-Type '{mimetype or 'none'}' is not supported; send application/fhir+json"
    )


def prefer(request: Request) -> dict[str, str]:
    """The Prefer header's preferences (parsed once a request: the route and the rendering ask)."""
    known: dict[str, str] | None = request.environ.get(_PREFER)
    if known is None:
        known = request.environ[_PREFER] = _parsed_prefer(request)
    return dict(known)


def _parsed_prefer(request: Request) -> dict[str, str]:
    values: dict[str, str] = {}
    header = request.environ.get("HTTP_PREFER")  # a WSGI server joins repeated headers in one
    if header is not None:
        for part in header.split(","):
            part = part.strip()
            if "=" in part:
                key, value = part.split("=", 1)
                values[key.strip().lower()] = value.strip().strip('"')
    return values


def presentation(request: Request) -> Presentation:
    if not request.environ.get("QUERY_STRING"):  # the commonest read: nothing to look up
        return Presentation(prefer_return=prefer(request).get("return"))
    pretty = request.args.get("_pretty", "false").lower() == "true"
    return Presentation(
        pretty=pretty,
        summary=parse_summary(request.args.get("_summary")),
        elements=parse_elements(request.args.getlist("_elements")),
        prefer_return=prefer(request).get("return"),
    )


def if_modified_since(request: Request):  # type: ignore[no-untyped-def]
    value = request.environ.get("HTTP_IF_MODIFIED_SINCE")
    if not value:
        return None
    parsed = parse_date(value)
    return parsed.replace(tzinfo=None) if parsed else None


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date_of(when: datetime) -> str:
    """`werkzeug.http.http_date` of a stored instant (naive, UTC), written directly: the same
    text (RFC 9110's IMF-fixdate, as `email.utils.format_datetime` writes it) for a fifth of
    its CPU, at every read."""
    if when.tzinfo is not None:
        return http_date(when)
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT"
    )


def render(result: Result, how: Presentation, base_url: str, *, shape_body: bool = True) -> Response:
    headers: dict[str, str] = dict(result.headers)
    stored = result.stored
    if stored is not None and not (stored.deleted and result.status == 204):
        headers["ETag"] = stored.etag
        headers["Last-Modified"] = http_date_of(stored.last_updated)
    if stored is not None and result.status in (200, 201) and result.resource is not None:
        where = _location(base_url, f"/{stored.res_type}/{stored.res_id}/_history/{stored.version_id}")
        headers["Content-Location"] = where
        if result.status == 201:
            headers["Location"] = where
    if result.status == 304 or result.resource is None:
        return Response(status=result.status, headers=headers)
    is_write_answer = result.status in (200, 201) and how.prefer_return is not None and stored is not None
    if is_write_answer and how.prefer_return == "minimal":
        return Response(status=result.status, headers=headers)
    if is_write_answer and how.prefer_return == "OperationOutcome":
        body = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"{stored.res_type}/{stored.res_id} is at version {stored.version_id}",
                }
            ],
        }
        return Response(orjson.dumps(body), status=result.status, headers=headers, content_type=FHIR_JSON)
    return Answer(
        _body(result.resource, how, shape_body), status=result.status, headers=headers, content_type=FHIR_JSON
    )


# A path under a FHIR base, as render writes one: a type, an id, `_history`, a version number.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.-]*")
# The bases seen lately, as URIs (None: one to leave to werkzeug); a client writes the Host.
BASES_KEPT = 64
_uri_bases: dict[str, str | None] = {}


def _location(base_url: str, path: str) -> str:
    """`base_url + path` as the URI werkzeug would send (`iri_to_uri`, which `Answer` then
    need not apply again): the base converted once, the plain path appended as it is."""
    uri_base = _uri_bases.get(base_url, "")
    if uri_base == "":
        uri_base = _uri_base(base_url)
        if len(_uri_bases) >= BASES_KEPT:
            _uri_bases.clear()
        _uri_bases[base_url] = uri_base
    if uri_base is None or not _PLAIN_PATH.fullmatch(path):
        return base_url + path
    return uri_base + path


def _uri_base(base_url: str) -> str | None:
    """`iri_to_uri(base_url)`, when a plain path appended to it makes the URI werkzeug makes of
    the whole and one it leaves as it is; else None (a base with a query, say)."""
    converted = iri_to_uri(base_url)
    sample = "/Organization/a-1.b/_history/1"
    if iri_to_uri(base_url + sample) != converted + sample or iri_to_uri(converted + sample) != converted + sample:
        return None
    return converted


class Answer(Response):
    """A FHIR answer with a body, as `render` makes it.

    werkzeug converts a Content-Location to a URI at every answer (`iri_to_uri`: a twentieth
    of a read's CPU); `render` wrote this one as that URI already (`_location`), so a 200
    without a Location header is sent with its headers as werkzeug would send them, less the
    conversion that changes nothing. Anything else goes through werkzeug's own.

    Its own headers are sent, not a copy: werkzeug copies them (every header checked again,
    a twentieth of a read's CPU) so that a response sent twice is sent alike; this one is sent
    once, and adding its length twice would find it there the second time."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        if self.status_code != 200 or "Location" in self.headers:
            return super().get_wsgi_headers(environ)
        headers = self.headers
        if self.automatically_set_content_length and self.is_sequence and "Content-Length" not in headers:
            headers["Content-Length"] = str(sum(len(x) for x in self.iter_encoded()))
        return headers


def _body(resource: object, how: Presentation, shape_body: bool) -> bytes:
    reshape = shape_body and (how.summary is not None or how.elements)
    if isinstance(resource, orjson.Fragment) and not reshape and not how.pretty:
        return orjson.dumps(resource)
    if reshape or how.pretty:
        # Only here is stored JSON parsed again: the client asked for another shape.
        plain = loads(orjson.dumps(resource))
        if (
            reshape
            and isinstance(plain, dict)
            and plain.get("resourceType") not in ("Bundle", "OperationOutcome")
        ):
            plain = shape(plain, how.summary, how.elements)
        return orjson.dumps(plain, option=orjson.OPT_INDENT_2 if how.pretty else 0)
    return orjson.dumps(resource)
