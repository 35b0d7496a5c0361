"""The resource protector: who is calling (bearer token → principal).

It sets the request's principal (api/caller.py) before any route runs: ANONYMOUS without a
token, the token's client otherwise. What that principal may see and write is the access
policy's business (fhirsrv/access), asked by the interactions themselves, for every path —
never decided here from the URL. A bad token is always 401, even on a public URL: a client
that believes it is authenticated must learn it is not.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine, select

from fhirsrv.access.policy import unauthorized
from fhirsrv.access.principal import ANONYMOUS
from fhirsrv.api.caller import is_unguarded, set_principal
from fhirsrv.api.current import current_request
from fhirsrv.auth.hardening import RequestLimits
from fhirsrv.auth.principal import TokenService
from fhirsrv.auth.tables import oauth_client


def client_is_active(engine: Engine, client_id: str) -> bool:
    """Whether the token's client is registered and not revoked, asked for every request.

    One primary-key lookup: a revocation (`fhirsrv clients revoke`, from any process) takes
    effect on the very next request, which no cache of the revocation list could promise."""
    with engine.connect() as conn:
        row = conn.execute(
            select(oauth_client.c.revoked).where(oauth_client.c.client_id == client_id)
        ).first()
    return row is not None and not row.revoked


def install_protector(app: Flask, tokens: TokenService, engine: Engine, limits: RequestLimits) -> None:
    def _refuse(reason: str) -> Exception:
        # A refused token is charged to the caller's address before the 401, so guessing
        # tokens is rate-limited like any anonymous request (429 once the budget is spent).
        limits.charge_address(current_request().remote_addr)
        return unauthorized(reason)

    def _identify() -> None:
        set_principal(ANONYMOUS)
        header = current_request().headers.get("Authorization", "")
        if not header or is_unguarded():  # the probes and /metrics judge their own header
            return
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            if current_request().path.endswith("/token"):
                return  # client_secret_basic at the token endpoint
            raise _refuse("Only Bearer access tokens are accepted")
        principal = tokens.verify(token.strip())
        if principal is None:
            raise _refuse("The access token is invalid or expired")
        if not client_is_active(engine, principal.client_id or ""):
            raise _refuse("The client of this access token has been revoked")
        set_principal(principal)

    app.before_request(_identify)
