"""Access tokens: issued to clients, verified into the access policy's Principal."""

from __future__ import annotations

import time
import uuid

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from fhirsrv.access.principal import Principal
from fhirsrv.auth.clients import Client
from fhirsrv.auth.keys import ALGORITHM


class TokenService:
    """Issues and verifies the server's JWT access tokens."""

    def __init__(self, key: RSAKey, issuer: str, lifetime: int) -> None:
        self.key = key
        self.issuer = issuer
        self.lifetime = lifetime

    def issue(self, client: Client, scope: str) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client.client_id,
            "aud": self.issuer,
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
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.issuer},
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
