"""create_app(settings) -> Flask. Nothing happens at import time."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fhirsrv.api import negotiation, outcome
from fhirsrv.api.home import home
from fhirsrv.api.routes import fhir
from fhirsrv.errors import FhirError, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.jsonshape import NUL
from fhirsrv.settings import Settings
from fhirsrv.wiring import build_services


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
        if NUL in request.path or any(NUL in k or NUL in v for k, v in request.args.items(multi=True)):
            # PostgreSQL cannot compare text with a NUL in it: refused here for every route, and
            # by the search engine for criteria that come another way (a body, a header).
            return outcome.respond(
                400, [Issue("error", "invalid", "The URL holds a NUL character (%00), which is not allowed")]
            )
        if request.path.startswith("/fhir"):
            negotiation.check_accept(request)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    from fhirsrv import auth

    auth.install(app, services)
    app.register_error_handler(FhirError, outcome.from_fhir_error)
    app.register_error_handler(HTTPException, outcome.from_http_exception)
    app.register_error_handler(Exception, outcome.from_unexpected)
    logging.getLogger("fhirsrv").setLevel(logging.INFO)
    return app
