"""The directory's own identifiers: one live resource of a type per identifier, and frozen once
the entry has been shown to the public.

The shared cancer record (DCC) cites the directory's offers and places by these identifiers: two
live offers with one identifier would make a citation ambiguous, and an identifier changed or
removed after publication would break the citations already made. The directory's identifiers
are those of its own naming systems, `<canonical base>/sid/…` (canonical.py: `sos-offer`,
`sos-location`); FINESS, SIRET or ROR identifiers belong to their own registries, which police
them, and are left alone.

Every write keeps the `resource_identifier` rows in its own transaction (writes.py calls
`hold`), so the database refuses a second holder even to concurrent writers
(fhirsrv/storage/identifiers.py).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, select, text

from fhirsrv.access.principal import Principal, Role
from fhirsrv.canonical import Canonicals
from fhirsrv.errors import Conflict
from fhirsrv.storage import identifiers as store
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import entry_access, live, resource

log = logging.getLogger("fhirsrv")

Key = store.Key
# Visibilities of an entry that is, or was, shown to every reader (published, verification
# pending; delisted or withdrawn, still readable by id): from then on it may be cited.
SHOWN = ("public", "retired")
# The PostgreSQL advisory lock of the start-up fill (with the schema's hash, as the sweep's).
FILL_LOCK_KEY = 7_418  # not 7415: the procedure runner's


class IdentifierTaken(Conflict):
    """Another live resource of the type holds the identifier (409, issue code duplicate)."""

    code = "duplicate"


class DirectoryIdentifiers:
    def __init__(self, canonicals: Canonicals) -> None:
        self.prefix = canonicals.naming_system("")  # "<base>/sid/": every system of the directory

    def keys(self, res: dict[str, Any] | None) -> dict[Key, int]:
        """The directory's identifiers of `res`, each with its first position in `identifier`."""
        found: dict[Key, int] = {}
        identifiers = res.get("identifier") if isinstance(res, dict) else None
        for position, ident in enumerate(identifiers if isinstance(identifiers, list) else []):
            system = ident.get("system") if isinstance(ident, dict) else None
            value = ident.get("value") if isinstance(ident, dict) else None
            if isinstance(system, str) and system.startswith(self.prefix) and isinstance(value, str) and value:
                found.setdefault((system, value), position)
        return found

    # --------------------------------------------------------------------------- writes
    def hold(
        self,
        conn: Connection,
        stored: StoredResource,
        res: dict[str, Any] | None,
        previous: dict[str, Any] | None,
    ) -> None:
        """Make the resource hold exactly the identifiers of its new content (None: a deletion
        gives them all up); 409 when another live resource of the type holds one.

        The answer is the same whoever holds it and whether or not the writer may see that
        entry: the identifier space is the directory's, so that an identifier is taken is not a
        secret, but the holder's id and content are never told. A writer learns it only after
        the access policy let it write here, so an anonymous caller or a reader learns nothing."""
        if res is None:
            store.release(conn, stored.rid)
            return
        wanted = self.keys(res)
        before = self.keys(previous)
        if not wanted and not before:
            return
        current = store.held(conn, stored.rid) if before else set()
        store.release(conn, stored.rid, current - wanted.keys())
        added = [store.Claim(stored.rid, stored.res_type, s, v) for s, v in wanted if (s, v) not in current]
        try:
            store.claim(conn, added)
        except store.Clash as clash:
            c = clash.claim
            raise IdentifierTaken(
                f"The {c.res_type} identifier {c.system}|{c.value} is already held by another {c.res_type} "
                "of the directory: its identifiers are unique per type, since care records cite entries by them",
                expression=[f"{c.res_type}.identifier[{wanted[c.key]}]"],
            ) from clash

    def hold_new(self, conn: Connection, items: list[tuple[StoredResource, dict[str, Any]]]) -> None:
        """New resources of a file load: a duplicate within them or with what is stored fails the
        file, naming both resources (the loader is the server: it may name them)."""
        claims = [
            store.Claim(s.rid, s.res_type, system, value) for s, res in items for system, value in self.keys(res)
        ]
        try:
            store.claim(conn, claims)
        except store.Clash as clash:
            c = clash.claim
            ids = {s.rid: s.res_id for s, _ in items}
            claimant = ids.get(c.rid, "?")
            holder = "another one"
            if clash.holder is not None:
                found = ids.get(clash.holder) or next(
                    (s.res_id for s in repository.get_many(conn, [clash.holder])), None
                )
                holder = f"{c.res_type}/{found}" if found else holder
            raise IdentifierTaken(
                f"{c.res_type}/{claimant}: the identifier {c.system}|{c.value} is already held by {holder}; "
                f"the directory's identifiers are unique per type"
            ) from clash

    def check_change(
        self,
        conn: Connection,
        principal: Principal,
        current: StoredResource,
        previous: dict[str, Any] | None,
        new: dict[str, Any],
        repair: str | None,
    ) -> bool:
        """An update (PUT, PATCH, a Bundle entry) may not change nor remove a directory
        identifier of an entry that is or was shown to the public: care records cite it. It may
        gain one. 409, like the procedure's answer to a wrong status: the same content is
        accepted on a draft, so it is the entry's state that refuses it. A regional administrator
        repairing data sends X-Lifecycle-Repair with the reason, as for a lifecycle record;
        returns whether that repair was used (the caller audits it). The server's own writes
        (file loads, authorization off) are not refused, as for lifecycle records."""
        if previous is None or principal.role is Role.SERVER:
            return False
        kept = self.keys(new)
        dropped = [k for k in self.keys(previous) if k not in kept]
        if not dropped:
            return False
        visibility = conn.execute(
            select(entry_access.c.visibility).where(entry_access.c.rid == current.rid)
        ).scalar()
        if visibility not in SHOWN:
            return False
        if principal.role is Role.REGIONAL_ADMIN and repair and repair.strip():
            return True
        system, value = dropped[0]
        raise Conflict(
            f"{current.res_type}/{current.res_id} has been published: its identifier {system}|{value} "
            "may not change nor be removed, since care records cite the entry by it. A regional "
            "administrator repairing data sends the header X-Lifecycle-Repair with the reason.",
            code="business-rule",
            expression=[f"{current.res_type}.identifier"],
        )

    # --------------------------------------------------------------------------- start-up
    def fill_if_missing(self, conn: Connection) -> list[str]:
        """Fill the table from the stored resources when it was never filled for this prefix (a
        database older than it, or a changed canonical base). Entries stored before the rule
        may share an identifier: the oldest keeps it, each other one is reported (and logged)
        so an administrator gives it another; until then an update of it answers 409."""
        if store.filled_for(conn) == self.prefix:
            return []
        if conn.dialect.name == "postgresql":  # two processes starting at once fill it once
            conn.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": FILL_LOCK_KEY})
            if store.filled_for(conn) == self.prefix:
                return []
        query = (
            select(resource.c.rid, resource.c.res_type, resource.c.res_id, resource.c.content)
            .where(live(resource), resource.c.content.contains(self.prefix, autoescape=True))
            .order_by(resource.c.rid)
            .execution_options(yield_per=2000)  # streamed: a large directory is not read at once
        )
        holders: dict[tuple[str, Key], str] = {}
        claims: list[store.Claim] = []
        clashes: list[str] = []
        for row in conn.execute(query):
            for system, value in self.keys(loads(row.content)):
                first = holders.setdefault((row.res_type, (system, value)), row.res_id)
                if first != row.res_id:
                    clashes.append(
                        f"{row.res_type}/{row.res_id} carries the identifier {system}|{value} of "
                        f"{row.res_type}/{first}: give it another one"
                    )
                    continue
                claims.append(store.Claim(row.rid, row.res_type, system, value))
        store.refill(conn, claims, self.prefix)
        for clash in clashes:
            log.warning("duplicate directory identifier: %s", clash)
        return clashes
