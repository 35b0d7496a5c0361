"""The procedure's own table: an application's confirmation and its referent.

The referent's e-mail and the confirmation token live here, not in the FHIR resources: they
are not directory content, and the token (kept as a hash) is a credential."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table, Text

from fhirsrv.storage.schema import metadata

application = Table(
    "application",
    metadata,
    Column("organization", String(64), primary_key=True),
    Column("referent_email", String(256), nullable=False),
    # sha256 of the single-use confirmation token sent by e-mail; NULL once used.
    Column("token_hash", String(64), nullable=True),
    Column("token_expires", DateTime, nullable=False),
    Column("confirmed", DateTime, nullable=True),
    Column("client_id", String(64), nullable=True),
    # The last criteria grid the referent submitted (JSON), kept as evidence of the decision.
    Column("answers", Text, nullable=True),
    Column("created", DateTime, nullable=False),
    # The address the application came from: applications per address and hour are limited
    # here, in the database, so the limit holds across worker processes.
    Column("address", String(64), nullable=True),
    Index("ix_application_address_created", "address", "created"),
)
