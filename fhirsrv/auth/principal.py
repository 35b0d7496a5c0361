"""Who is calling: the claims of a verified access token, as the guards need them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from fhirsrv.auth import scopes as smart
from fhirsrv.auth.clients import Client
from fhirsrv.auth.keys import ALGORITHM


@dataclass(frozen=True)
class Principal:
    client_id: str
    name: str
    role: str
    scope: str
    departements: tuple[str, ...] = ()
    organization: str | None = None
    grants: list[smart.Grant] = field(default_factory=list, compare=False)

    @property
    def is_regional(self) -> bool:
        return self.role == "regional-admin"

    def may(self, res_type: str, interaction: str) -> bool:
        return smart.allows(self.grants, res_type, interaction)

    def label(self) -> str:
        return f"{self.name} ({self.role})"


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
        scope = str(claims.get("scope") or "")
        return Principal(
            client_id=str(claims.get("client_id") or claims.get("sub")),
            name=str(claims.get("name") or ""),
            role=str(claims.get("role") or ""),
            scope=scope,
            departements=tuple(claims.get("departements") or ()),
            organization=claims.get("organization"),
            grants=smart.parse(scope),
        )
