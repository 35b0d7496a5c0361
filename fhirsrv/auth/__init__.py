"""OAuth 2 / SMART on FHIR: the authorization server, token checks and HTTP hardening.

`install(app, services)` identifies every request's principal (api/caller.py); what that
principal may see and write is decided by the access policy (fhirsrv/access), which the
interactions ask on every path. With authorization off (`FHIRSRV_AUTH=off`) only the
security headers are installed and every caller acts as the server: for tests and a local
demo, never a deployment.
"""

from __future__ import annotations

from functools import partial

from flask import Flask

from fhirsrv.api.caller import install_open_access
from fhirsrv.auth.hardening import RequestLimits, install_headers, install_rate_limit
from fhirsrv.auth.keys import load_signing_key
from fhirsrv.auth.principal import TokenService
from fhirsrv.auth.protect import install_protector
from fhirsrv.auth.server import api_base, install_server, security_section
from fhirsrv.interactions.context import Services

__all__ = ["install"]


def install(app: Flask, services: Services) -> None:
    settings = services.settings
    install_headers(app, settings)
    if not settings.auth:
        install_open_access(app)
        return
    key = load_signing_key(services.engine, settings.jwt_private_key, settings.jwt_key_file)
    # The issuer is the public base (FHIRSRV_BASE_URL, else the request's): the one the
    # CapabilityStatement and the SMART configuration give, never the canonical base.
    tokens = TokenService(key, partial(api_base, services), settings.token_lifetime)
    install_server(app, services, tokens)
    limits = RequestLimits(settings)
    install_protector(app, tokens, services.engine, limits)
    install_rate_limit(app, limits)
    services.security_section = security_section
