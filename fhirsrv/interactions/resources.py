"""What the server serves: resource types, id rules, and reading a request body as a resource."""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhirsrv.errors import BadRequest, InvalidResource, MethodNotAllowed, NotFound
from fhirsrv.jsonshape import MAX_JSON_DEPTH, JsonShapeError, check_json_shape, may_hold_control_characters
from fhirsrv.resource_types import (  # noqa: F401 - re-exported for interactions
    CONFORMANCE_TYPES,
    DIRECTORY_TYPES,
    SERVER_WRITTEN_TYPES,
    SUPPORTED_TYPES,
)

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# What a client may do at any URL of a server-written type (its search, its instances).
READ_ONLY_METHODS = "GET, HEAD"


def check_type(res_type: str, *, writable: bool = False) -> None:
    """A write to a server-written type is 405 with the methods that remain (R4 and RFC 9110:
    the method, not the request, is what this server does not support there)."""
    if res_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type '{res_type}' is not supported by this server", code="not-supported")
    if writable and res_type in SERVER_WRITTEN_TYPES:
        raise MethodNotAllowed(
            f"{res_type} resources are written by the server only", headers={"Allow": READ_ONLY_METHODS}
        )


def check_id(res_id: str) -> None:
    if not _ID.match(res_id):
        raise BadRequest(f"'{res_id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})")


def parse_json(body: bytes) -> Any:
    """Parse a request body; invalid UTF-8, bad JSON, absurd nesting and control characters are all
    400 (fhirsrv/jsonshape.py: what the validators and PostgreSQL would otherwise fail on)."""
    if not body:
        raise BadRequest("The request has no body")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # the parser's own limit, above ours: say ours
            raise BadRequest(
                f"The body is refused: the JSON is nested more than {MAX_JSON_DEPTH} levels deep "
                "(this server's limit)",
                code="structure",
            ) from exc
        raise BadRequest(f"The body is not valid JSON: {exc}", code="structure") from exc
    try:
        check_json_shape(parsed, strings=may_hold_control_characters(body))
    except JsonShapeError as exc:
        expression = [exc.path] if exc.path else []
        raise BadRequest(f"The body is refused: {exc}", code="structure", expression=expression) from exc
    return parsed


def parse_resource(body: bytes, expected_type: str | None = None) -> dict[str, Any]:
    res = parse_json(body)
    return check_resource(res, expected_type)


def check_resource(res: Any, expected_type: str | None = None, where: str = "") -> dict[str, Any]:
    if not isinstance(res, dict):
        raise InvalidResource(f"{where}The body must be a JSON object (a FHIR resource)")
    res_type = res.get("resourceType")
    if not isinstance(res_type, str):
        raise InvalidResource(f"{where}The resource has no resourceType", expression=["resourceType"])
    if expected_type is not None and res_type != expected_type:
        raise BadRequest(
            f"{where}The resourceType is '{res_type}' but the URL is for '{expected_type}'",
            expression=["resourceType"],
        )
    return res
