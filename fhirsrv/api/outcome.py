"""Every failure as an OperationOutcome with the right status; never a stack trace."""

from __future__ import annotations

import logging

import orjson
from flask import Response
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from fhirsrv.errors import FhirError, Issue
from fhirsrv.logformat import FIELDS, exception_summary
from fhirsrv.storage.faults import RETRY_AFTER_SECONDS, unavailability

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


def from_database_error(exc: SQLAlchemyError) -> Response:
    """503 with Retry-After when the database is unreachable, busy or too slow; else a 500.

    A statement cut by the statement timeout is a 503 too: the same request may well pass
    once the load or the lock that slowed it is gone, and nothing of it was written (its
    transaction rolled back)."""
    fault = unavailability(exc)
    if fault is None:
        return from_unexpected(exc)
    log.warning("database unavailable: %s", fault.reason)
    code = "timeout" if fault.timed_out else "transient"
    return respond(
        503,
        [Issue("error", code, f"Service unavailable: {fault.reason}; nothing was changed, retry later")],
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def from_abandoned(exc: Exception) -> Response:
    """The client closed its connection mid-request: the work stopped and rolled back. The
    answer goes nowhere; the status (nginx's "client closed request") is for the access log."""
    log.info("client gone: request abandoned, nothing of it was written")
    return respond(
        499, [Issue("error", "incomplete", "The client closed the connection; nothing was changed")]
    )


def from_unexpected(exc: Exception) -> Response:
    """A bug: its type and stack go to the log, never its message (it may quote request data:
    a statement's parameters, a value), whatever formatter the log has."""
    exc_type, stack = exception_summary((type(exc), exc, exc.__traceback__))
    log.error("unexpected error: %s", exc_type, extra={FIELDS: {"exc_type": exc_type, "stack": stack}})
    return respond(500, [Issue("fatal", "exception", "Internal server error; the request was not applied")])
