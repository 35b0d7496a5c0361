"""Tables of the authorization server: registered clients and used assertion ids.

They hang on the storage `metadata` so that the test fixtures (which truncate every table of
the metadata) and Alembic's autogenerate see them; migration 0002 creates them.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, String, Table, Text

from fhirsrv.storage.schema import metadata

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    # "scrypt$<salt hex>$<hash hex>"; NULL for clients that authenticate with private_key_jwt.
    Column("secret_hash", String(512), nullable=True),
    Column("jwks", Text, nullable=True),
    Column("scopes", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("departements", String(512), nullable=False, default=""),
    Column("organization", String(128), nullable=True),
    Column("created", DateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    # Territorial admins: "3c" (authorised health establishments) or "dac" (every other
    # structure); None validates both (a département's single administration).
    Column("kind", String(8), nullable=True),
    # Where the procedure's messages to this client's people go (migration 0008).
    Column("email", String(256), nullable=True),
    # A territory given as communes (INSEE codes, space-separated): a DAC area may be smaller
    # than a département.
    Column("communes", Text, nullable=False, default=""),
)

# A client assertion's jti is kept until the assertion expires, so a replay is refused.
oauth_jti = Table(
    "oauth_jti",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires", DateTime, nullable=False),
)
