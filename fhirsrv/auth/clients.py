"""Registered OAuth 2 clients: creation (secret shown once, stored hashed), lookup, revocation.

A client carries its role and perimeter (départements, Organization) besides its scopes, so an
access token says everything the resource protector needs without another query.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from fhirsrv.access.principal import CLIENT_ROLES, TERRITORIAL_KINDS
from fhirsrv.access.scopes import parse as parse_scopes
from fhirsrv.auth.tables import oauth_client
from fhirsrv.resource_types import OWNED_TYPES
from fhirsrv.storage.jsonfmt import utcnow

# The access policy's client roles (fhirsrv/access/principal.py), in its spelling.
ROLES = tuple(str(role) for role in CLIENT_ROLES)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


# Checked against when a client has no secret (it signs assertions), so that the answer takes
# the same scrypt work as for a wrong secret and tells nothing of how the client authenticates.
_NO_SECRET = f"scrypt${'00' * 16}${'00' * 32}"


def verify_secret(secret: str, stored: str | None) -> bool:
    usable = bool(stored) and str(stored).startswith("scrypt$") and str(stored).count("$") == 2
    _, salt, digest = (str(stored) if usable else _NO_SECRET).split("$", 2)
    candidate = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(candidate.hex(), digest) and usable


@dataclass
class Client:
    """A row of oauth_client, shaped as authlib's ClientMixin expects."""

    client_id: str
    name: str
    scopes: str
    role: str
    departements: list[str] = field(default_factory=list)
    organization: str | None = None
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    created: datetime | None = None
    revoked: bool = False
    kind: str | None = None
    email: str | None = None
    communes: list[str] = field(default_factory=list)

    # -- authlib ClientMixin --------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        from fhirsrv.access.scopes import narrow

        return narrow(scope, self.scopes) if scope else self.scopes

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method in ("client_secret_basic", "client_secret_post"):
            return self.secret_hash is not None
        if method == "private_key_jwt":
            return self.jwks is not None
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def public_view(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "scopes": self.scopes,
            "role": self.role,
            "departements": self.departements,
            "organization": self.organization,
            "kind": self.kind,
            "communes": self.communes,
            "email": self.email,
            "auth_method": "private_key_jwt" if self.jwks else "client_secret",
            "created": self.created.isoformat() if self.created else None,
            "revoked": self.revoked,
        }


def _from_row(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        scopes=row.scopes,
        role=row.role,
        departements=row.departements.split() if row.departements else [],
        organization=row.organization,
        kind=row.kind,
        email=row.email,
        communes=row.communes.split() if row.communes else [],
        secret_hash=row.secret_hash,
        jwks=json.loads(row.jwks) if row.jwks else None,
        created=row.created,
        revoked=row.revoked,
    )


def add_client(
    conn: Connection,
    name: str,
    scopes: str,
    role: str,
    departements: list[str] | None = None,
    organization: str | None = None,
    jwks: dict[str, Any] | None = None,
    kind: str | None = None,
    email: str | None = None,
    communes: list[str] | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it with its clear secret (None for a private_key_jwt client)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "territorial-admin" and not departements and not communes:
        raise ValueError("a territorial admin needs at least one --departement or --commune")
    if communes and role != "territorial-admin":
        raise ValueError("only a territorial admin has communes")
    if any(not (len(c) == 5 and c[:2].isalnum() and c[2:].isdigit()) for c in communes or []):
        raise ValueError("--commune takes INSEE codes of five characters (e.g. 94028, 2A004)")
    if role == "structure-referent" and not (organization and organization.startswith("Organization/")):
        raise ValueError("a structure referent needs --organization Organization/ID")
    if role != "territorial-admin" and departements:
        raise ValueError("only a territorial admin has départements")
    if role != "structure-referent" and organization:
        raise ValueError("only a structure referent has an organization")
    if kind is not None and (role != "territorial-admin" or kind not in TERRITORIAL_KINDS):
        raise ValueError("--kind is 3c or dac, for a territorial admin only")
    if email is not None and "@" not in email:
        raise ValueError("--email must be an e-mail address")
    if role == "partner-reader" and any(
        letter in grant.interactions
        for grant in parse_scopes(scopes)
        if grant.res_type not in OWNED_TYPES
        for letter in "cud"
    ):
        raise ValueError(
            "a partner reader reads: its scopes may grant r and s only (e.g. system/*.rs), and "
            "c, u and d on its own Subscriptions (system/Subscription.cruds)"
        )
    if jwks is not None and not isinstance(jwks.get("keys"), list):
        raise ValueError("the JWKS must be a JSON object with a 'keys' array")
    secret = None if jwks is not None else secrets.token_urlsafe(32)
    client = Client(
        client_id=str(uuid.uuid4()),
        name=name,
        scopes=scopes,
        role=role,
        departements=list(departements or []),
        organization=organization,
        secret_hash=hash_secret(secret) if secret else None,
        jwks=jwks,
        created=utcnow(),
        kind=kind,
        email=email,
        communes=list(communes or []),
    )
    conn.execute(
        oauth_client.insert().values(
            client_id=client.client_id,
            name=name,
            secret_hash=client.secret_hash,
            jwks=json.dumps(jwks) if jwks is not None else None,
            scopes=scopes,
            role=role,
            departements=" ".join(client.departements),
            organization=organization,
            created=client.created,
            revoked=False,
            kind=kind,
            email=email,
            communes=" ".join(communes or []),
        )
    )
    return client, secret


def get_client(conn: Connection, client_id: str) -> Client | None:
    """An active (not revoked) client, or None."""
    row = conn.execute(
        select(oauth_client).where(oauth_client.c.client_id == client_id, oauth_client.c.revoked.is_(False))
    ).first()
    return _from_row(row) if row else None


def list_clients(conn: Connection) -> list[Client]:
    rows = conn.execute(select(oauth_client).order_by(oauth_client.c.created, oauth_client.c.client_id))
    return [_from_row(r) for r in rows]


def revoke_client(conn: Connection, client_id: str) -> bool:
    result = conn.execute(
        update(oauth_client).where(oauth_client.c.client_id == client_id).values(revoked=True)
    )
    return result.rowcount > 0
