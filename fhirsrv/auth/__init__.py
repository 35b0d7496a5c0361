"""OAuth 2 / SMART on FHIR authorization, roles, audit and hardening.

`install(app, services)` is called by fhirsrv.wiring.install_http for every HTTP app. With
auth off (`FHIRSRV_AUTH=off` or `Settings.extra["auth"] = "off"`) only the security headers are
installed: every caller may then read and write everything, which suits tests and a local
demo, never a deployment.
"""

from __future__ import annotations

from flask import Flask

from fhirsrv.auth.audit import audit_event, make_audit_hook
from fhirsrv.auth.hardening import install_headers, install_rate_limit
from fhirsrv.auth.keys import load_signing_key
from fhirsrv.auth.principal import Principal, TokenService
from fhirsrv.auth.protect import RevokedClients, install_protector
from fhirsrv.auth.roles import write_guard
from fhirsrv.auth.server import install_server, security_section
from fhirsrv.auth.settings import AuthSettings
from fhirsrv.auth.visibility import make_search_guard, read_guard
from fhirsrv.interactions.context import Services

__all__ = ["AuthSettings", "Principal", "audit_event", "install"]


def install(app: Flask, services: Services) -> None:
    auth_settings = AuthSettings.load(services.settings)
    install_headers(app, auth_settings)
    if not auth_settings.enabled:
        return
    issuer = (services.settings.base_url or services.settings.canonical_base).rstrip("/")
    key = load_signing_key(services.engine, auth_settings.private_key_pem)
    tokens = TokenService(key, issuer, auth_settings.token_lifetime)
    install_server(app, services, auth_settings, tokens)
    ttl = float(services.settings.extra.get("revocation_ttl", 30))
    install_protector(app, tokens, RevokedClients(services.engine, ttl))
    install_rate_limit(app, auth_settings)

    def has_status_param(res_type: str) -> bool:
        return services.search.registry.get(res_type, "entry-status") is not None

    services.extras["write_guard"] = write_guard
    services.extras["read_guard"] = read_guard
    services.extras["search_guard"] = make_search_guard(has_status_param)
    hooks = services.extras.setdefault("write_hooks", [])
    hooks.append(make_audit_hook(services))
    services.extras["security_section"] = security_section(services)
    services.extras["tokens"] = tokens
