"""Who is asking: every interaction receives a Principal, never "nobody".

There is no optional caller: an anonymous request carries ANONYMOUS, the server's own work
(loading files, a scheduled sweep, a server with authorization switched off) carries SERVER.
A code path that forgot to say who is asking cannot type-check, and cannot fail open.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from fhirsrv.access import scopes as smart


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    # Coordination platforms: the public view plus delisted entries, to learn of delistings.
    PARTNER_READER = "partner-reader"
    STRUCTURE_REFERENT = "structure-referent"
    TERRITORIAL_ADMIN = "territorial-admin"
    REGIONAL_ADMIN = "regional-admin"
    # The server itself (file loads, scheduled jobs) or every caller when authorization is off.
    SERVER = "server"


# What a territorial admin validates: the 3C, authorised health establishments; the DAC,
# every other structure (INCa; thesis 004, l. ~3068). A client without a kind does both.
TERRITORIAL_KINDS = ("3c", "dac")
# The roles an OAuth client may be registered with (`fhirsrv clients add --role`).
CLIENT_ROLES = (
    Role.REGIONAL_ADMIN,
    Role.TERRITORIAL_ADMIN,
    Role.STRUCTURE_REFERENT,
    Role.PARTNER_READER,
)


@dataclass(frozen=True)
class Principal:
    role: Role
    client_id: str = ""
    name: str = ""
    scope: str = ""
    departements: tuple[str, ...] = ()
    # The referent's structure, as an Organization id (no "Organization/" prefix).
    organization: str | None = None
    # The network address the request came from, for audit records.
    address: str | None = None
    # A territorial admin's kind (TERRITORIAL_KINDS), None for both.
    kind: str | None = None
    # A territory given as communes (INSEE codes): structures with a place there.
    communes: tuple[str, ...] = ()
    grants: tuple[smart.Grant, ...] = field(default=(), compare=False)

    @classmethod
    def client(
        cls,
        *,
        role: str,
        client_id: str,
        name: str,
        scope: str,
        departements: tuple[str, ...] = (),
        organization: str | None = None,
        kind: str | None = None,
        communes: tuple[str, ...] = (),
    ) -> Principal:
        """A token's principal; an unknown role in a token is refused rather than guessed."""
        parsed = Role(role)
        if parsed not in CLIENT_ROLES:
            raise ValueError(f"'{role}' is not a client role")
        org = organization.removeprefix("Organization/") if organization else None
        return cls(
            parsed,
            client_id,
            name,
            scope,
            tuple(departements),
            org,
            None,
            kind if kind in TERRITORIAL_KINDS else None,
            tuple(communes),
            tuple(smart.parse(scope)),
        )

    def at(self, address: str | None) -> Principal:
        return replace(self, address=address)

    @property
    def is_anonymous(self) -> bool:
        return self.role is Role.ANONYMOUS

    @property
    def sees_everything(self) -> bool:
        """Regional administrators and the server read every entry and the audit log."""
        return self.role in (Role.REGIONAL_ADMIN, Role.SERVER)

    def may(self, res_type: str, interaction: str) -> bool:
        """What the token's SMART scopes allow (c r u d s); anonymous callers may read and
        search (the policy then shows them the public view only); the server may do anything."""
        if self.role is Role.SERVER:
            return True
        if self.role is Role.ANONYMOUS:
            return interaction in ("r", "s")
        return smart.allows(list(self.grants), res_type, interaction)

    def label(self) -> str:
        return f"{self.name} ({self.role})" if self.name else str(self.role)


ANONYMOUS = Principal(Role.ANONYMOUS)
SERVER = Principal(Role.SERVER, name="fhirsrv (server process)")
