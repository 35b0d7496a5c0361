"""Access tokens: issued to clients, verified into the access policy's Principal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from fhirsrv.access.principal import Principal
from fhirsrv.auth.clients import Client
from fhirsrv.auth.keys import ALGORITHM


class TokenService:
    """Issues and verifies the server's JWT access tokens.

    The issuer (and audience) is the server's public base as the current request sees it: the
    configured FHIRSRV_BASE_URL, else the base the request reached. A token is thus accepted
    only at the base it was issued for; the signature, not the issuer, is what makes it
    trustworthy, so a Host header a client chooses can narrow where its token works, never
    widen it."""

    def __init__(self, key: RSAKey, issuer: Callable[[], str], lifetime: int) -> None:
        self.key = key
        self._issuer = issuer
        self.lifetime = lifetime

    @property
    def issuer(self) -> str:
        return self._issuer()

    def issue(self, client: Client, scope: str) -> dict:
        now = int(time.time())
        issuer = self.issuer
        claims = {
            "iss": issuer,
            "sub": client.client_id,
            "aud": issuer,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": str(uuid.uuid4()),
            "client_id": client.client_id,
            "name": client.name,
            "scope": scope,
            "role": client.role,
            "departements": client.departements,
            "organization": client.organization,
            "kind": client.kind,
            "communes": client.communes,
        }
        token = jwt.encode(
            {"alg": ALGORITHM, "typ": "at+jwt", "kid": self.key.kid}, claims, self.key, algorithms=[ALGORITHM]
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime, "scope": scope}

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid token; None when the signature, issuer or expiry is wrong."""
        issuer = self.issuer
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": issuer},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, TypeError):
            return None
        claims = decoded.claims
        try:
            return Principal.client(
                client_id=str(claims.get("client_id") or claims.get("sub")),
                name=str(claims.get("name") or ""),
                role=str(claims.get("role") or ""),
                scope=str(claims.get("scope") or ""),
                departements=tuple(claims.get("departements") or ()),
                organization=claims.get("organization"),
                kind=claims.get("kind"),
                communes=tuple(claims.get("communes") or ()),
            )
        except ValueError:
            return None  # a role this server does not know: no access rather than a guess
