"""The principal of the current HTTP request, and its rate-limit meter, kept on Flask's
request globals.

Exactly one component sets each before any route runs: the resource protector (auth/protect.py)
and the rate limiter (auth/hardening.py) when authorization is on, `install_open_access` when it
is off. Reading one when nobody set it is a programming error, answered 500, never a silent
"anonymous", "everyone" or "unlimited".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask

from fhirsrv.access.principal import SERVER, Principal
from fhirsrv.api.current import current_flask_app, current_request, request_globals
from fhirsrv.interactions.context import UNMETERED, Meter


def set_principal(principal: Principal) -> None:
    request_globals().fhirsrv_principal = principal.at(current_request().remote_addr)


def principal() -> Principal:
    found = request_globals().get("fhirsrv_principal")
    if not isinstance(found, Principal):
        raise RuntimeError("No principal was set for this request: no access layer is installed")
    return found


def set_meter(meter: Meter) -> None:
    request_globals().fhirsrv_meter = meter


def meter() -> Meter:
    found = request_globals().get("fhirsrv_meter")
    if found is None:
        raise RuntimeError("No rate-limit meter was set for this request: no access layer is installed")
    return found


View = TypeVar("View", bound=Callable[..., object])
_UNGUARDED = "fhirsrv_unguarded"


def unguarded(view: View) -> View:
    """Marks a view outside the access layer: the health probes and /metrics, which read no
    FHIR data and guard themselves. A load balancer's probe must not spend a rate budget shared
    with real clients (a 429 would read as "down"), nor be refused for a header that was never
    meant for the API (/metrics takes its own bearer token)."""
    setattr(view, _UNGUARDED, True)
    return view


def is_unguarded() -> bool:
    view = current_flask_app().view_functions.get(current_request().endpoint or "")
    return bool(getattr(view, _UNGUARDED, False))


def install_open_access(app: Flask) -> None:
    """Authorization off (development only): every caller acts as the server itself, unmetered."""

    @app.before_request
    def _everyone_is_the_server() -> None:
        set_principal(SERVER)
        set_meter(UNMETERED)
