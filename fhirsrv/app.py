"""create_app(settings) -> Flask. Nothing happens at import time."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from flask import Flask, Response
from sqlalchemy.exc import SQLAlchemyError
from waitress import create_server
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from fhirsrv.api import bulk_export, health, metrics, negotiation, outcome, request_facts, request_log
from fhirsrv.api.current import current_request
from fhirsrv.api.routes import fhir
from fhirsrv.errors import FhirError, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.jsonshape import NUL
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import Abandoned, probe_engine, unwatch_requester, watch_requester
from fhirsrv.web import views as web
from fhirsrv.wiring import build_services

# Requests waitress reads ahead on a connection while one runs: with any, it notices a client
# that closed its connection and tells the app (environ "waitress.client_disconnected").
REQUEST_LOOKAHEAD = 2


class _App(Flask):
    """Flask, asking once per view or hook whether it is a coroutine function, not at each call.

    Flask asks before running each before- and after-request hook and the view (`ensure_sync`,
    the documented place to change it): about fifteen `inspect` calls a request, a tenth of a
    read's own CPU. A function's answer never changes; none of this app's is a coroutine."""

    _sync_checked: dict[Callable[..., Any], Callable[..., Any]]

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        checked = self.__dict__.setdefault("_sync_checked", {})
        known = checked.get(func)
        if known is None:
            known = checked[func] = super().ensure_sync(func)
        return known


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or Settings.from_env()
    services = services or build_services(settings)
    app = _App("fhirsrv")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["fhirsrv"] = services
    app.register_blueprint(fhir, url_prefix="/fhir")
    bulk_export.install(app, services)  # $export, its status and files (fhirsrv/sync)
    web.install(app, services)  # the public directory's pages at / (fhirsrv/web)
    _observe(app, services)

    @app.before_request
    def _guard() -> Response | None:
        req = current_request()  # once, not per use
        if len(req.query_string) > settings.max_query_length:
            return outcome.respond(
                414,
                [
                    Issue(
                        "error",
                        "too-costly",
                        f"The query string is longer than {settings.max_query_length} bytes",
                    )
                ],
            )
        if NUL in req.path or any(NUL in k or NUL in v for k, v in req.args.items(multi=True)):
            # PostgreSQL cannot compare text with a NUL in it: refused here for every route, and
            # by the search engine for criteria that come another way (a body, a header).
            return outcome.respond(
                400, [Issue("error", "invalid", "The URL holds a NUL character (%00), which is not allowed")]
            )
        if req.path.startswith("/fhir"):
            negotiation.check_accept(req)
        return None

    _stop_work_of_gone_clients(app)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    from fhirsrv import auth

    auth.install(app, services)
    app.register_error_handler(FhirError, outcome.from_fhir_error)
    app.register_error_handler(HTTPException, outcome.from_http_exception)
    app.register_error_handler(SQLAlchemyError, outcome.from_database_error)
    app.register_error_handler(Abandoned, outcome.from_abandoned)
    app.register_error_handler(Exception, outcome.from_unexpected)
    logging.getLogger("fhirsrv").setLevel(logging.INFO)
    if settings.trusted_proxies:
        # The client address (rate limits, audit), the scheme (HSTS, the token endpoint's https)
        # and the host come from the forwarded headers of exactly this many trusted hops; what
        # a client wrote in them itself, further left, is never believed.
        hops = settings.trusted_proxies
        fixed = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
        app.wsgi_app = fixed  # type: ignore[method-assign]
    return app


def _observe(app: Flask, services: Services) -> None:
    """The request log, metrics and health probes. Installed before every other hook: the clock
    starts first, and the log and the metrics (after-request hooks run in reverse order) see
    each answer last, as it leaves, whichever hook refused the request."""
    request_facts.install(app, services)
    request_log.install(app, services)
    probe = probe_engine(services.settings)  # a connection of its own for each probe, never the pool's
    metrics.install(app, services, probe)
    health.install(app, probe)


def _stop_work_of_gone_clients(app: Flask) -> None:
    """A request whose client has gone stops at its next SQL statement and rolls back, rather
    than running its searches and writes to the end for nobody. Needs a server that says so
    (waitress with REQUEST_LOOKAHEAD, see `make_server`); under others nothing changes."""

    @app.before_request
    def _watch_the_client() -> None:
        gone = current_request().environ.get("waitress.client_disconnected")
        if gone is not None:
            current_request().environ["fhirsrv.client_watch"] = watch_requester(gone)

    @app.teardown_request
    def _unwatch(_error: BaseException | None) -> None:
        token = current_request().environ.pop("fhirsrv.client_watch", None)
        if token is not None:
            unwatch_requester(token)


def share_the_interpreter(settings: Settings) -> None:
    """How long a thread may keep the interpreter's lock while another waits for it
    (FHIRSRV_SWITCH_INTERVAL_MS): what a cheap request waits, at most, each time it needs the
    lock while a heavy one runs in the same process. Called as a server process starts."""
    sys.setswitchinterval(settings.switch_interval_ms / 1000)


def make_server(
    app: Flask, settings: Settings, host: str, port: int, threads: int = 8, ident: str = "fhirsrv"
) -> Any:
    """The waitress server of `fhirsrv serve`.

    Waitress drops every X-Forwarded-* header unless told to keep them: it keeps them exactly
    when the app trusts some proxy hops (FHIRSRV_TRUSTED_PROXIES), so ProxyFix above is the one
    place that decides what they mean, whatever the WSGI server. It reads ahead on each
    connection (REQUEST_LOOKAHEAD), so it can tell a request its client has gone."""
    share_the_interpreter(settings)
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident=ident,
        clear_untrusted_proxy_headers=settings.trusted_proxies == 0,
        channel_request_lookahead=REQUEST_LOOKAHEAD,
    )
