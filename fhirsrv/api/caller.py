"""The principal of the current HTTP request, and its rate-limit meter, kept on Flask's
request globals.

Exactly one component sets each before any route runs: the resource protector (auth/protect.py)
and the rate limiter (auth/hardening.py) when authorization is on, `install_open_access` when it
is off. Reading one when nobody set it is a programming error, answered 500, never a silent
"anonymous", "everyone" or "unlimited".
"""

from __future__ import annotations

from flask import Flask, g, request

from fhirsrv.access.principal import SERVER, Principal
from fhirsrv.interactions.context import UNMETERED, Meter


def set_principal(principal: Principal) -> None:
    g.fhirsrv_principal = principal.at(request.remote_addr)


def principal() -> Principal:
    found = g.get("fhirsrv_principal")
    if not isinstance(found, Principal):
        raise RuntimeError("No principal was set for this request: no access layer is installed")
    return found


def set_meter(meter: Meter) -> None:
    g.fhirsrv_meter = meter


def meter() -> Meter:
    found = g.get("fhirsrv_meter")
    if found is None:
        raise RuntimeError("No rate-limit meter was set for this request: no access layer is installed")
    return found


def install_open_access(app: Flask) -> None:
    """Authorization off (development only): every caller acts as the server itself, unmetered."""

    @app.before_request
    def _everyone_is_the_server() -> None:
        set_principal(SERVER)
        set_meter(UNMETERED)
