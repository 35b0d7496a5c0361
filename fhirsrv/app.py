"""create_app(settings) -> Flask. Nothing happens at import time."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from fhirsrv.api import negotiation, outcome
from fhirsrv.api.home import home
from fhirsrv.api.routes import fhir
from fhirsrv.errors import FhirError, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import Abandoned, unwatch_requester, watch_requester
from fhirsrv.wiring import build_services

# Requests waitress reads ahead on a connection while one runs: with any, it notices a client
# that closed its connection and tells the app (environ "waitress.client_disconnected").
REQUEST_LOOKAHEAD = 2


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or Settings.from_env()
    services = services or build_services(settings)
    app = Flask("fhirsrv")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["fhirsrv"] = services
    app.register_blueprint(fhir, url_prefix="/fhir")
    app.register_blueprint(home)

    @app.before_request
    def _guard() -> Response | None:
        if len(request.query_string) > settings.max_query_length:
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
        if request.path.startswith("/fhir"):
            negotiation.check_accept(request)
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
    return app


def _stop_work_of_gone_clients(app: Flask) -> None:
    """A request whose client has gone stops at its next SQL statement and rolls back, rather
    than running its searches and writes to the end for nobody. Needs a server that says so
    (waitress with REQUEST_LOOKAHEAD, see `http_server`); under others nothing changes."""

    @app.before_request
    def _watch_the_client() -> None:
        gone = request.environ.get("waitress.client_disconnected")
        if gone is not None:
            request.environ["fhirsrv.client_watch"] = watch_requester(gone)

    @app.teardown_request
    def _unwatch(_error: BaseException | None) -> None:
        token = request.environ.pop("fhirsrv.client_watch", None)
        if token is not None:
            unwatch_requester(token)


def http_server(app: Flask, host: str, port: int, threads: int):  # type: ignore[no-untyped-def]
    """The waitress server of `fhirsrv serve`, reading ahead so it can tell a client has gone."""
    from waitress import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="fhirsrv",
        channel_request_lookahead=REQUEST_LOOKAHEAD,
    )
