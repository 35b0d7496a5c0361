"""The resource protector: who is calling (bearer token → principal) and what the URL asks.

The principal is put in `current_principal` for the request so the Flask-free interactions'
guards (roles.py, visibility.py) see it. A bad token is always 401, even on a public URL: a
client that believes it is authenticated must learn it is not.
"""

from __future__ import annotations

import threading
import time

from flask import Flask, g, request
from sqlalchemy import Engine, select

from fhirsrv.auth.principal import TokenService
from fhirsrv.auth.roles import unauthorized
from fhirsrv.auth.tables import oauth_client
from fhirsrv.auth.visibility import may_read
from fhirsrv.errors import Forbidden
from fhirsrv.interactions.context import current_principal

# Endpoints of the fhir blueprint that read one resource type named in the URL.
_READ_ENDPOINTS = {"fhir.instance", "fhir.instance_history", "fhir.instance_vread", "fhir.type_history"}


class RevokedClients:
    """Revoked client ids, re-read at most every `ttl` seconds: a revocation takes effect on
    tokens already issued within that delay, for one small query per interval, not per request."""

    def __init__(self, engine: Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def __contains__(self, client_id: str) -> bool:
        now = time.monotonic()
        if now - self._read_at > self.ttl:
            with self._lock, self.engine.connect() as conn:
                rows = conn.execute(select(oauth_client.c.client_id).where(oauth_client.c.revoked.is_(True)))
                self._ids = frozenset(r.client_id for r in rows)
                self._read_at = now
        return client_id in self._ids


def install_protector(app: Flask, tokens: TokenService, revoked: RevokedClients) -> None:
    def _identify() -> None:
        g.auth_context_token = current_principal.set(None)
        header = request.headers.get("Authorization", "")
        if not header:
            return
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            if request.path.endswith("/token"):
                return  # client_secret_basic at the token endpoint
            raise unauthorized("Only Bearer access tokens are accepted")
        principal = tokens.verify(token.strip())
        if principal is None:
            raise unauthorized("The access token is invalid or expired")
        if principal.client_id in revoked:
            raise unauthorized("The client of this access token has been revoked")
        current_principal.set(principal)

    def _check_scope() -> None:
        principal = current_principal.get()
        if (
            principal is None
            or request.endpoint not in _READ_ENDPOINTS
            or request.method not in ("GET", "HEAD")
        ):
            return
        res_type = (request.view_args or {}).get("res_type", "")
        if res_type.startswith("$") or str((request.view_args or {}).get("res_id", "")).startswith("$"):
            return
        if not may_read(principal, res_type):
            raise Forbidden(f"The token does not allow reading {res_type}")

    def _reset(exc: BaseException | None) -> None:
        token = g.pop("auth_context_token", None)
        if token is not None:
            current_principal.reset(token)

    app.before_request(_identify)
    app.before_request(_check_scope)
    app.teardown_request(_reset)
