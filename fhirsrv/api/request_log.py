"""One log line per request, with a request id, and nothing personal in it.

The line (logger `fhirsrv.request`, fields in `extra`, written by fhirsrv/logformat.py):
request_id, client (the OAuth client id, else "anonymous"), method, interaction, resource_type,
operation (a registered one), params (the NAMES of a search's criteria), status, duration_ms,
and pool ("heavy" when the heavy-request pool answered, fhirsrv/heavy_pool.py).

What it never holds, because the directory's data and its clients' searches are about people:
a path (an id a client chose may be a name), a query string's values (`name=Le Bras`), a body,
a header but X-Request-ID, a token, a client's display name. Successful health probes are not
logged (a load balancer asks every few seconds); a failing one is.

The request id is the client's `X-Request-ID` when it looks like one (REQUEST_ID_PATTERN: at most
128 characters of letters, digits and `._:-`), so a caller can follow its request through the
proxy and the server; else a new one. It is echoed in the answer's `X-Request-ID`, and every
log line written while the request runs carries it (an error's stack trace included).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import Token

from flask import Flask, Response

from fhirsrv.api import request_facts
from fhirsrv.api.current import current_request, request_globals
from fhirsrv.heavy_pool import POOL_KEY
from fhirsrv.interactions.context import Services
from fhirsrv.logformat import FIELDS, REQUEST_ID

log = logging.getLogger("fhirsrv.request")

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"  # where request.headers finds it
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes answered 200 are not logged: the metrics count them.
QUIET_WHEN_OK = frozenset({"health", "readiness"})


def request_id_of(given: str | None) -> str:
    """The client's id when it is sane, else a fresh one (32 hexadecimal digits)."""
    if given is not None and REQUEST_ID_PATTERN.fullmatch(given):
        return given
    return uuid.uuid4().hex


def install(app: Flask, services: Services) -> None:
    @app.before_request
    def _identify_request() -> None:
        request_id = request_id_of(current_request().environ.get(ENVIRON_KEY))
        globals_ = request_globals()  # once, not per use
        globals_.fhirsrv_request_id = request_id
        globals_.fhirsrv_request_id_token = REQUEST_ID.set(request_id)

    @app.after_request
    def _log(response: Response) -> Response:
        request_id = request_globals().get("fhirsrv_request_id") or request_id_of(None)
        response.headers[HEADER] = request_id
        facts = request_facts.describe()
        if facts.interaction in QUIET_WHEN_OK and response.status_code == 200:
            return response
        fields: dict[str, object] = {
            "request_id": request_id,
            "client": request_facts.client_label(),
            "method": request_facts.method_label(),
            "interaction": facts.interaction,
            "resource_type": facts.resource_type or None,
            "status": response.status_code,
            "duration_ms": round(request_facts.elapsed_seconds() * 1000, 2),
        }
        if facts.operation:
            fields["operation"] = facts.operation
        if current_request().environ.get(POOL_KEY):
            fields["pool"] = current_request().environ[POOL_KEY]  # answered by the heavy pool (heavy_pool.py)
        params = request_facts.parameter_names(services, facts.interaction)
        if params:
            fields["params"] = params
        # A 500 is a bug (its stack is logged by api/outcome.py); a 503 a database in trouble.
        level = logging.ERROR if response.status_code == 500 else logging.WARNING if response.status_code > 500 else logging.INFO
        log.log(level, "request", extra={FIELDS: fields})
        return response

    @app.teardown_request
    def _forget(_error: BaseException | None) -> None:
        token: Token[str | None] | None = request_globals().pop("fhirsrv_request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)
