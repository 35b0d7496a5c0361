"""The resource protector: who is calling (bearer token → principal).

It sets the request's principal (api/caller.py) before any route runs: ANONYMOUS without a
token, the token's client otherwise. What that principal may see and write is the access
policy's business (fhirsrv/access), asked by the interactions themselves, for every path —
never decided here from the URL. A bad token is always 401, even on a public URL: a client
that believes it is authenticated must learn it is not.
"""

from __future__ import annotations

import threading
import time

from flask import Flask, request
from sqlalchemy import Engine, select

from fhirsrv.access.policy import unauthorized
from fhirsrv.access.principal import ANONYMOUS
from fhirsrv.api.caller import set_principal
from fhirsrv.auth.principal import TokenService
from fhirsrv.auth.tables import oauth_client


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
        set_principal(ANONYMOUS)
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
        set_principal(principal)

    app.before_request(_identify)
