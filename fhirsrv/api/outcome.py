"""Every failure as an OperationOutcome with the right status; never a stack trace."""

from __future__ import annotations

import logging

import orjson
from flask import Response
from werkzeug.exceptions import HTTPException

from fhirsrv.errors import FhirError, Issue

log = logging.getLogger("fhirsrv")
FHIR_JSON = "application/fhir+json; charset=utf-8"

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    414: "too-costly",
    415: "not-supported",
    422: "business-rule",
    429: "throttled",
}


def outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def respond(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(outcome(issues)), status=status, content_type=FHIR_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def from_fhir_error(exc: FhirError) -> Response:
    return respond(exc.status, exc.issues, exc.headers)


def from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or exc.name
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
        message = f"This URL accepts {', '.join(exc.valid_methods)}"
    if status == 404:
        message = "No such FHIR endpoint on this server"
    return respond(status, [Issue("error", _HTTP_CODES.get(status, "processing"), message)], headers)


def from_unexpected(exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return respond(500, [Issue("fatal", "exception", "Internal server error; the request was not applied")])
