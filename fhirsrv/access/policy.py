"""The access policy: the one place that answers who may see and write what.

Every interaction asks it, and only it, three questions:
- which entries may this principal see? (`scope`: SQL conditions a search, a chain, an
  include or a history page adds to its own query, so counts and paging stay exact);
- may it see this stored resource or version? (`visible`, `visible_versions`);
- may it make this change? (`check_write_intent` before any work on the request, then
  `check_write` on the stored target and the new content inside the write's transaction).
A refusal never depends on whether the target exists: an invisible resource is answered as
an unknown one, and write refusals come before any lookup the caller could learn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, select, true

from fhirsrv.access import owners
from fhirsrv.access.facts import (
    AUDIT_TYPES,
    CITEABLE_TYPES,
    DIRECTORY_TYPES,
    GOVERNED_TYPES,
    RETIRED_STATUSES,
    FactReader,
    Visibility,
    local_reference,
    status_visibility,
)
from fhirsrv.access.facts_store import FactStore
from fhirsrv.access.principal import Principal, Role
from fhirsrv.access.visibility import PrincipalScope, sees_retired, territory_structures
from fhirsrv.canonical import Canonicals
from fhirsrv.errors import Forbidden, NotFound, Unauthorized
from fhirsrv.resource_types import OWNED_TYPES
from fhirsrv.search.walk import correlate
from fhirsrv.storage import rawread, repository
from fhirsrv.storage.changes import Listed
from fhirsrv.storage.engine import one_statement_read
from fhirsrv.storage.jsonfmt import dumps, loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import change_log, entry_access, live, resource

CHALLENGE = 'Bearer realm="fhirsrv", error="invalid_token"'
# Read-by-id statements kept (one per principal and type), at most: they are rebuilt past it.
READ_QUERIES = 1024
_UNBUILT = object()
_INTERACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": CHALLENGE})


class ScopedReads(PrincipalScope):
    """A principal's ReadScope, narrowed by its token's SMART scopes: a type it may not
    search (`s`) matches nothing, nor can a chain look through it; a type it may not read
    (`r`) is never included."""

    def searchable(self, res_type: str, rid: Any) -> Any:
        if not self.principal.may(res_type, "s"):
            return _nothing(rid)
        return super().searchable(res_type, rid)

    def readable(self, res_type: str, rid: Any) -> Any:
        if not self.principal.may(res_type, "r"):
            return _nothing(rid)
        return super().readable(res_type, rid)

    def changes(self, res_types: Sequence[str], log: Any) -> Any:
        """A history lists the types the token may read (`r`), as read and vread do."""
        return super().changes([t for t in res_types if self.principal.may(t, "r")], log)


def _nothing(rid: Any) -> Any:
    from sqlalchemy import false

    return false()


class AccessPolicy:
    def __init__(self, canonicals: Canonicals) -> None:
        self.reader = FactReader(canonicals)
        self.facts = FactStore(self.reader)
        self._read_queries: dict[tuple[Any, ...], Select[Any] | None] = {}
        self._raw_reads: dict[tuple[Any, ...], rawread.RawStatement | None] = {}

    # ---------------------------------------------------------------------------- reads
    def scope(self, principal: Principal) -> ScopedReads:
        return ScopedReads(principal)

    def check_read(self, principal: Principal, res_type: str, interaction: str = "r") -> None:
        """May the principal use this interaction (r: read, vread, history; s: search) on the
        type at all? Before any lookup, so the answer says nothing of what is stored."""
        if res_type in OWNED_TYPES and principal.is_anonymous:
            raise unauthorized(f"{res_type} resources are their owner's: reading them needs a bearer access token")
        if res_type in AUDIT_TYPES and not principal.sees_everything:
            if principal.is_anonymous:
                raise unauthorized(f"Reading {res_type} needs a regional administrator's token")
            raise Forbidden(f"Only regional administrators may read {res_type}")
        if not principal.may(res_type, interaction):
            raise Forbidden(
                f"The token's scopes do not allow {_INTERACTION_NAMES[interaction]} on {res_type}"
            )

    def visible(self, conn: Connection, principal: Principal, stored: Sequence[StoredResource]) -> set[int]:
        """The rids among `stored` (current versions) the principal may read by id."""
        if _sees_all(principal, stored):
            return {s.rid for s in stored}
        return self._readable_rids(conn, principal, [(s.res_type, s.rid) for s in stored])

    def _readable_rids(self, conn: Connection, principal: Principal, entries: Sequence[tuple[str, int]]) -> set[int]:
        """The rids among these (type, rid) the principal may read by id now."""
        scope = self.scope(principal)
        by_type: dict[str, list[int]] = {}
        for res_type, rid in entries:
            by_type.setdefault(res_type, []).append(rid)
        shown: set[int] = set()
        for res_type, rids in by_type.items():
            condition = scope.readable(res_type, resource.c.rid)
            if condition is None:
                shown.update(rids)
                continue
            probe = correlate(condition, resource.c.rid)  # one index probe per row, not a join
            unique = sorted(set(rids))
            for start in range(0, len(unique), 500):
                query = select(resource.c.rid).where(resource.c.rid.in_(unique[start : start + 500]), probe)
                shown.update(r for (r,) in conn.execute(query))
        return shown

    def read_current(
        self, conn: Connection, principal: Principal, res_type: str, res_id: str
    ) -> tuple[StoredResource | None, bool]:
        """The current version of `res_type/res_id` and whether the principal may read it by
        id (as `visible`), in one statement: the commonest request costs no extra round trip."""
        everything = principal.sees_everything and res_type not in OWNED_TYPES
        if everything:
            stored = repository.get_current(conn, res_type, res_id)
            return stored, stored is not None
        query = self._read_query(principal, res_type)
        if query is None:
            stored = repository.get_current(conn, res_type, res_id)
            return stored, stored is not None
        found = repository.run_current_flagged(conn, query, res_id)
        if found is None:
            return None, False
        return self._without_retired_people(principal, found[0]), found[1]

    def as_shown(self, principal: Principal, found: Sequence[StoredResource]) -> list[StoredResource]:
        """Resources a search found (its matches, and what `_include` brought in: a structure
        that left the directory is included as a read by id shows it), each as the principal
        is shown it: a structure that left the directory without its contact persons for
        whoever may not see them, as its read shows it."""
        return [self._without_retired_people(principal, s) for s in found]

    def read_current_alone(
        self, engine: Engine, principal: Principal, res_type: str, res_id: str
    ) -> tuple[StoredResource | None, bool]:
        """`read_current` as a statement of its own, outside any transaction (a read by id).

        The same statement, from the same scope, gives the same answer; on PostgreSQL it runs
        straight on the pool's connection (storage/rawread.py), which spares a third of the
        CPU of the commonest request. Elsewhere, `read_current` on a connection of its own."""
        raw = self._raw_read(engine, principal, res_type)
        if raw is None:
            with one_statement_read(engine) as conn:
                return self.read_current(conn, principal, res_type, res_id)
        found = repository.fetch_current_flagged(engine, raw, res_id)
        if found is None:
            return None, False
        return self._without_retired_people(principal, found[0]), found[1]

    def _raw_read(self, engine: Engine, principal: Principal, res_type: str) -> rawread.RawStatement | None:
        """`read_current`'s statement for this principal and type, compiled for the engine's
        driver (None: it cannot run raw there); kept as `_read_query` keeps it, for the same
        reason. A principal that reads every row gets the condition TRUE: the flag is then
        always set, as `read_current` answers for it."""
        key = (engine, principal.at(None), principal.grants, res_type)
        cached = self._raw_reads.get(key, _UNBUILT)
        if cached is not _UNBUILT:
            return cached  # type: ignore[return-value]
        everything = principal.sees_everything and res_type not in OWNED_TYPES
        query = None if everything else self._read_query(principal, res_type)
        if query is None:
            query = repository.current_flagged_query(res_type, true())
        raw = rawread.compile_one(engine, query, ("res_id",))
        if len(self._raw_reads) >= READ_QUERIES:
            self._raw_reads.clear()
        self._raw_reads[key] = raw
        return raw

    def _read_query(self, principal: Principal, res_type: str) -> Select[Any] | None:
        """The read-by-id statement of this principal and type (None: it reads every row).

        Decided by the scope, as every read is, and kept: the condition is SQL that depends on
        the principal's fields and the type only, never on stored data, so the statement built
        for one request is the right one for the next of the same principal, whatever was
        written meanwhile. Keyed by every field of the principal but its network address."""
        key = (principal.at(None), principal.grants, res_type)
        cached = self._read_queries.get(key, _UNBUILT)
        if cached is not _UNBUILT:
            return cached
        condition = self.scope(principal).readable(res_type, resource.c.rid)
        query = None if condition is None else repository.current_flagged_query(
            res_type, correlate(condition, resource.c.rid)
        )
        if len(self._read_queries) >= READ_QUERIES:
            self._read_queries.clear()  # many distinct clients: start again rather than grow
        self._read_queries[key] = query
        return query

    def visible_versions(
        self, conn: Connection, principal: Principal, versions: Sequence[StoredResource]
    ) -> list[StoredResource]:
        """The versions (history, vread) the principal may read. The entry must be readable
        now, and each version must have been in the principal's view while it was the current
        one: when written, or when the entry's visibility changed while it still was (the
        change log keeps both, the rows a type history lists, `scope().changes`). So a version
        written and replaced while the entry or its structure was hidden (a place changed
        before its structure was published, a structure's first version without a status) is
        not shown once the entry is listed; the version current at the listing is, as a read
        showed it then. An entry in the principal's perimeter now shows every version. A
        structure that left the directory, or was deleted, is shown without its contact
        persons to whoever may not see them."""
        if not versions or _sees_all(principal, versions):
            return list(versions)
        if principal.sees_everything:  # a regional administrator: all but others' owned types
            owned = self.visible(conn, principal, _unique_rids([v for v in versions if v.res_type in OWNED_TYPES]))
            return [v for v in versions if v.res_type not in OWNED_TYPES or v.rid in owned]
        entries = self.visible(conn, principal, _unique_rids(versions))
        readable = [v for v in versions if v.rid in entries]
        judged = [v for v in readable if v.res_type in GOVERNED_TYPES and v.content is not None]
        mine = self._in_perimeter(conn, principal, judged)
        in_view = self._in_view_while_current(conn, principal, [v for v in judged if v.rid not in mine])
        named = {
            v.res_id
            for v in readable
            if v.res_type == "Organization" and v.rid not in mine and v.content and '"contact"' in v.content
        }
        left = self._structures_left(conn, principal, named)
        shown = []
        for v in readable:
            judged_here = v.res_type in GOVERNED_TYPES and v.content is not None and v.rid not in mine
            if judged_here and (v.rid, v.version_id) not in in_view:
                continue
            shown.append(_people_removed(v) if v.res_type == "Organization" and v.res_id in left else v)
        return shown

    def _in_view_while_current(
        self, conn: Connection, principal: Principal, versions: Sequence[StoredResource]
    ) -> set[tuple[int, int]]:
        """Which of these versions were in the principal's view, read by id, at some change
        while they were current (any change-log row naming the version): public then, or
        retired then (a citeable entry, or a principal who searches retired entries)."""
        if not versions:
            return set()
        wanted = {(v.rid, v.version_id): v.res_type for v in versions}
        c = change_log.c
        found: set[tuple[int, int]] = set()
        rids = sorted({rid for rid, _ in wanted})
        for start in range(0, len(rids), 500):
            rows = conn.execute(
                select(c.rid, c.version_id, c.visibility).where(c.rid.in_(rids[start : start + 500]))
            )
            for rid, version_id, visibility in rows:
                res_type = wanted.get((rid, version_id))
                if res_type is None:
                    continue
                if visibility == Visibility.PUBLIC or (
                    visibility == Visibility.RETIRED and (sees_retired(principal) or res_type in CITEABLE_TYPES)
                ):
                    found.add((rid, version_id))
        return found

    def _structures_left(self, conn: Connection, principal: Principal, named: set[str]) -> set[str]:
        """Which of these structures have left the directory (delisted, withdrawn) or were
        deleted, for a principal who may not see the people of such a structure (empty for
        the others): their contact persons are not shown to it."""
        if not named or sees_retired(principal):
            return set()
        named = named - self._structures_in_perimeter(conn, principal, named)
        left = {org for org, seen in self._structure_visibility(conn, named).items() if seen is Visibility.RETIRED}
        deleted = select(resource.c.res_id).where(
            resource.c.res_type == "Organization", resource.c.res_id.in_(sorted(named)), resource.c.deleted == true()
        )
        return left | {org for (org,) in conn.execute(deleted)}

    def listed_as_shown(self, conn: Connection, principal: Principal, page: list[Listed]) -> list[Listed]:
        """A type or system history's page (read from the change log under `scope().changes`),
        each change as the principal is shown it, as `visible_versions` shows an instance's
        history:
        - a version of an entry the principal may not read now is left out: a person or role
          of a structure that left the directory, an entry hidden since. The change that took
          it out of the principal's view is listed as a removal, so a client that had copied
          it drops it, and a client that replays the history from the start never gets it;
        - a structure that left the directory, or was deleted, without its contact persons
          for whoever may not see them."""
        if principal.sees_everything:
            return page
        scope = self.scope(principal)
        versions = [c for c in page if not c.removal and c.content is not None and c.res_type in GOVERNED_TYPES]
        # Most principals' reading is decided by the entry's visibility now, which the page
        # carries; a perimeter's, by the database.
        decided = {c.seq: scope.readable_with(c.res_type, c.visibility_now) for c in versions}
        asked = [(c.res_type, c.rid) for c in versions if decided[c.seq] is None]
        readable = self._readable_rids(conn, principal, asked) if asked else set()
        page = [
            c
            for c in page
            if c.seq not in decided or decided[c.seq] or (decided[c.seq] is None and c.rid in readable)
        ]
        named = {c.res_id for c in page if c.res_type == "Organization" and c.content and '"contact"' in c.content}
        left = self._structures_left(conn, principal, named)
        return [_people_removed(c) if c.res_type == "Organization" and c.res_id in left else c for c in page]

    def _without_retired_people(self, principal: Principal, stored: StoredResource) -> StoredResource:
        """`stored`, or for a structure that left the directory (delisted, withdrawn), read by
        whoever may not see the people of such a structure, the same without its contact
        persons (`_people_removed`). Only a structure (Organization) that names some is parsed."""
        content = stored.content
        if (
            stored.res_type != "Organization"
            or content is None
            or '"contact"' not in content
            or not any(f'"{status}"' in content for status in RETIRED_STATUSES)  # not parsed
            or sees_retired(principal)
        ):
            return stored
        status = self.reader.status(loads(content))
        if status_visibility(status, absent=Visibility.HIDDEN) is not Visibility.RETIRED:
            return stored
        if principal.role is Role.STRUCTURE_REFERENT and principal.organization == stored.res_id:
            return stored  # its own people
        return _people_removed(stored)

    def _structures_in_perimeter(self, conn: Connection, principal: Principal, structures: set[str]) -> set[str]:
        if principal.role is Role.STRUCTURE_REFERENT:
            return structures & {principal.organization}
        if principal.role is Role.TERRITORIAL_ADMIN and structures:
            return self._territory_structures(conn, principal, structures)
        return set()

    def _territory_structures(self, conn: Connection, principal: Principal, structures: set[str]) -> set[str]:
        """Which of these structures lie in the territorial admin's territory."""
        territory = territory_structures(principal)
        if territory is None or not structures:
            return set()
        found = territory.subquery()
        rows = conn.execute(select(found.c[0]).where(found.c[0].in_(sorted(structures))).distinct())
        return {s for (s,) in rows}

    def in_territory(self, conn: Connection, principal: Principal, structure: str) -> bool:
        return structure in self._territory_structures(conn, principal, {structure})

    def _structure_visibility(self, conn: Connection, structures: set[str]) -> dict[str, Visibility]:
        """The visibility of each structure, deleted ones included: a deletion keeps the
        structure's facts as they were (facts_store.deleted), and a version that named it is
        judged by them. So `Organization/x/_history/1` still answers the public once x is
        deleted, as a care plan citing it expects; what is readable *now* is decided before
        (the entry itself, whose structure's deletion hid it)."""
        if not structures:
            return {}
        rows = conn.execute(
            select(entry_access.c.structure, entry_access.c.visibility).where(
                entry_access.c.res_type == "Organization", entry_access.c.structure.in_(sorted(structures))
            )
        )
        return {s: Visibility(v) for s, v in rows}

    def _in_perimeter(self, conn: Connection, principal: Principal, stored: Sequence[StoredResource]) -> set[int]:
        scope = self.scope(principal)
        found: set[int] = set()
        for res_type in {s.res_type for s in stored}:
            condition = scope.perimeter(res_type, resource.c.rid)
            if condition is None:
                continue
            rids = sorted({s.rid for s in stored if s.res_type == res_type})
            probe = correlate(condition, resource.c.rid)
            found.update(r for (r,) in conn.execute(select(resource.c.rid).where(resource.c.rid.in_(rids), probe)))
        return found

    # --------------------------------------------------------------------------- writes
    def check_write_intent(self, principal: Principal, res_type: str, interaction: str) -> None:
        """Everything that can be refused from the request line and the token alone, before
        the request's body is looked at or anything is read from the database."""
        if principal.role is Role.SERVER:
            return
        if principal.is_anonymous:
            raise unauthorized("Writing needs a bearer access token (see /fhir/.well-known/smart-configuration)")
        if res_type in AUDIT_TYPES:
            raise Forbidden(f"{res_type} resources are written by the server only")
        if not principal.may(res_type, interaction):
            raise Forbidden(f"The token's scopes do not allow {_INTERACTION_NAMES[interaction]} on {res_type}")
        if res_type in OWNED_TYPES:
            return  # any client its scopes allow, partner readers included: each writes its own
        if principal.role is Role.PARTNER_READER:
            raise Forbidden("A partner reader's client reads the directory; it cannot change it")
        if principal.role is Role.REGIONAL_ADMIN:
            return
        if interaction == "d":
            raise Forbidden(
                "Deleting is reserved to regional administrators: an entry leaves the directory "
                "through delisting, so the references to it never break"
            )
        if res_type not in GOVERNED_TYPES:
            raise Forbidden(f"Only a regional administrator may write {res_type} resources")
        if res_type == "Organization" and interaction == "c" and principal.role is Role.STRUCTURE_REFERENT:
            raise Forbidden("A structure referent manages its own structure; it cannot create another one")

    def check_write(
        self,
        conn: Connection,
        principal: Principal,
        res_type: str,
        current: StoredResource | None,
        new: dict[str, Any] | None,
    ) -> None:
        """The entry-level checks, inside the write's transaction: the stored target (if any,
        deleted or not) and the new content must both lie in the principal's perimeter."""
        self.check_write_intent(
            principal, res_type, "d" if new is None else ("c" if current is None or current.deleted else "u")
        )
        if res_type in OWNED_TYPES:
            if current is not None:
                self.check_write_target(conn, principal, current)
            return
        if principal.role in (Role.SERVER, Role.REGIONAL_ADMIN):
            return
        if current is not None:
            self.check_write_target(conn, principal, current)
        if new is not None:
            self._check_content(conn, principal, res_type, new, current)

    def check_write_target(self, conn: Connection, principal: Principal, current: StoredResource) -> None:
        if current.res_type in OWNED_TYPES:
            # Another client's is answered as one that does not exist.
            if not owners.owns(conn, principal, current):
                raise NotFound(f"{current.res_type}/{current.res_id} is not known")
            return
        if principal.role in (Role.SERVER, Role.REGIONAL_ADMIN):
            return
        if current.res_type == "Practitioner":
            if not self._person_is_mine(conn, principal, current.res_id):
                raise self._outside(principal, current.res_type)
            return
        if not self._in_perimeter(conn, principal, [current]):
            raise self._outside(principal, current.res_type)

    def _check_content(
        self,
        conn: Connection,
        principal: Principal,
        res_type: str,
        new: dict[str, Any],
        current: StoredResource | None,
    ) -> None:
        if res_type == "Practitioner":
            return  # a person's links to structures are its roles, checked when they are written
        structure = self.reader.structure(new)
        if structure is None:
            raise Forbidden(
                f"This {res_type} names no structure (Organization) of this server: only a regional "
                "administrator may write it"
            )
        self._check_places(conn, principal, res_type, new, structure)
        if res_type == "PractitionerRole":
            self._check_person(conn, principal, new, current)
        if principal.role is Role.STRUCTURE_REFERENT:
            if structure != principal.organization:
                raise self._outside(principal, res_type)
            return
        if res_type == "Organization":
            # Its address decides, as written now (a structure cannot be moved out of, or into,
            # a territory); or, for a DAC of communes, its places there.
            departements = set(self.reader.departements(new))
            inside = bool(departements) and departements <= set(principal.departements)
            if not inside and principal.communes:
                inside = structure in self._territory_structures(conn, principal, {structure})
        else:
            inside = structure in self._territory_structures(conn, principal, {structure})
        if not inside:
            raise self._outside(principal, res_type)

    def _check_places(
        self, conn: Connection, principal: Principal, res_type: str, new: dict[str, Any], structure: str
    ) -> None:
        """An offer or a role takes place at its own structure's Locations: pointing at another
        structure's would move it into a perimeter that is not the writer's."""
        places = new.get("location") if res_type in ("HealthcareService", "PractitionerRole") else None
        ids = {local_reference(p, "Location") for p in places} if isinstance(places, list) else set()
        ids.discard(None)
        if not ids:
            return
        location = resource.alias("place")
        owners = conn.execute(
            select(entry_access.c.structure)
            .join(location, location.c.rid == entry_access.c.rid)
            .where(location.c.res_type == "Location", location.c.res_id.in_(sorted(ids)))  # type: ignore[arg-type]
        ).all()
        if len(owners) != len(ids) or any(owner != structure for (owner,) in owners):
            raise Forbidden(
                f"This {res_type}'s locations must be Locations of its own structure Organization/{structure}"
            )

    def _check_person(
        self, conn: Connection, principal: Principal, new: dict[str, Any], current: StoredResource | None
    ) -> None:
        """A role may name a person the writer may already see, or one no role names yet (a
        contact person just created): naming a hidden person of another structure would pull
        that person into the writer's perimeter — and, for a listed structure, into public view."""
        person = self.reader.facts(new).person
        if person is None:
            return
        if current is not None and current.content and self.reader.facts(loads(current.content)).person == person:
            return  # the role already named this person
        stored = repository.get_current(conn, "Practitioner", person)
        seen = stored is not None and not stored.deleted and self.visible(conn, principal, [stored])
        if seen or (stored is not None and not stored.deleted and not self._named_by_a_role(conn, person)):
            return
        raise Forbidden(
            f"This PractitionerRole names Practitioner/{person}, which this client may not see: a role "
            "names the structure's own contact person (create it first, or ask a regional administrator)"
        )

    def _named_by_a_role(self, conn: Connection, person: str) -> bool:
        role_resource = resource.alias("naming_role")
        return (
            conn.execute(
                select(entry_access.c.rid).where(
                    entry_access.c.res_type == "PractitionerRole",
                    entry_access.c.person == person,
                    entry_access.c.rid.in_(select(role_resource.c.rid).where(live(role_resource))),
                )
            ).first()
            is not None
        )

    def check_lifecycle(
        self,
        principal: Principal,
        current: dict[str, Any] | None,
        new: dict[str, Any],
        repair: str | None,
    ) -> bool:
        """A plain create, update or patch may not change an entry's lifecycle record: the
        procedure's operations do. A new entry starts as a draft (or without a status of its
        own), its record holding nothing but that status and its date: a validation written
        by hand (a `regionValidatedOn`) would make an entry never published citeable once
        withdrawn (access/facts.py). Only a regional administrator repairing data may, saying
        why (`X-Lifecycle-Repair: reason`), and the repair is audited. Returns whether one was used."""
        if principal.role is Role.SERVER or new.get("resourceType") not in DIRECTORY_TYPES:
            return False
        before = self.reader.lifecycle(current) if current is not None else None
        after = self.reader.lifecycle(new)
        if current is None:
            parts = {p.get("url") for p in (after or {}).get("extension") or [] if isinstance(p, dict)}
            changed = after is not None and (
                self.reader.status(new) not in (None, "draft") or not parts <= {"status", "statusDate"}
            )
        else:
            changed = before != after
        if not changed:
            return False
        if principal.role is Role.REGIONAL_ADMIN and repair and repair.strip():
            return True
        raise Forbidden(
            "An entry's lifecycle (status, validations, verification) changes through the procedure's "
            "operations: $submit, $validate-territory, $publish, $reject, $withdraw, $attest. A regional "
            "administrator repairing data sends the header X-Lifecycle-Repair with the reason."
        )

    def new_entry(self, principal: Principal, res: dict[str, Any]) -> dict[str, Any]:
        """What a create stores: `res`, or for a new offer (HealthcareService) with no status of
        its own, sent by a client below regional administrators, a copy that starts as a draft.
        Without a status an offer takes its structure's visibility, so an offer added to a
        listed structure would be listed at once, skipping its own steps ($submit,
        $validate-territory, $publish). Called after `check_lifecycle`, which refuses any other
        status than a draft's on a new entry."""
        if (
            res.get("resourceType") != "HealthcareService"
            or principal.role in (Role.SERVER, Role.REGIONAL_ADMIN)
            or self.reader.status(res) is not None
        ):
            return res
        draft = {"url": self.reader.lifecycle_url, "extension": [{"url": "status", "valueCode": "draft"}]}
        return {**res, "extension": [draft, *(res.get("extension") or [])]}

    def check_update_target(
        self, conn: Connection, principal: Principal, res_type: str, res_id: str, current: StoredResource | None
    ) -> None:
        """A PUT to an id: below regional administrators, a client updates entries it can see,
        and creates through POST (the server chooses the id). So a PUT to an unknown, deleted or
        unseen id gets one answer, before If-Match, and tells nothing of what is stored there.
        An owned type (a Subscription) is created by POST by every client, regional
        administrators included: its id never says whether another client's exists."""
        if res_type in OWNED_TYPES and principal.role is not Role.SERVER:
            if current is None or current.deleted or not owners.owns(conn, principal, current):
                raise Forbidden(
                    f"{res_type}/{res_id} is not a {res_type} of this client: a client creates its "
                    f"{res_type} resources by POST (the server chooses the id)"
                )
            return
        if principal.role in (Role.SERVER, Role.REGIONAL_ADMIN):
            if current is not None:
                self.check_write_target(conn, principal, current)
            return
        if current is None or current.deleted or not self.visible(conn, principal, [current]):
            raise Forbidden(
                f"{res_type}/{res_id} is not an entry this client may update: below regional "
                "administrators, new entries are created by POST (the server chooses the id)"
            )
        self.check_write_target(conn, principal, current)

    def record_owner(self, conn: Connection, stored: StoredResource, principal: Principal) -> None:
        """After a write (the write path, in its transaction): the creator of a resource of an
        owned type becomes its owner, for good."""
        owners.record(conn, stored, principal)

    def _person_is_mine(self, conn: Connection, principal: Principal, person: str) -> bool:
        """A referent (or territorial admin) updates a person named by its roles only, and only
        when no role of another structure (territory) names that person too."""
        role_resource = resource.alias("role_resource")
        rows = conn.execute(
            select(entry_access.c.structure).where(
                entry_access.c.res_type == "PractitionerRole",
                entry_access.c.person == person,
                entry_access.c.rid.in_(select(role_resource.c.rid).where(live(role_resource))),
            )
        ).all()
        structures = {s for (s,) in rows}
        if not structures or None in structures:
            return False
        if principal.role is Role.STRUCTURE_REFERENT:
            return structures == {principal.organization}
        if principal.role is Role.TERRITORIAL_ADMIN:
            return self._territory_structures(conn, principal, structures) == structures
        return False

    def _outside(self, principal: Principal, res_type: str) -> Forbidden:
        if principal.role is Role.STRUCTURE_REFERENT:
            where = f"the structure Organization/{principal.organization}"
        else:
            where = (
                f"the territory of this client (départements {', '.join(principal.departements) or 'none'}"
                + (f"; communes {', '.join(principal.communes)}" if principal.communes else "")
                + ")"
            )
        return Forbidden(f"This {res_type} is outside {where}: this client may not write it")


# A stored version, as a read or an instance history has it, or as a type history lists it.
_Version = TypeVar("_Version", StoredResource, Listed)


def _people_removed(version: _Version) -> _Version:
    """A structure's version without its contact persons (`contact`)."""
    if version.content is None:  # a deletion
        return version
    content = loads(version.content)
    content.pop("contact", None)
    return replace(version, content=dumps(content))


def _sees_all(principal: Principal, stored: Sequence[StoredResource]) -> bool:
    """Whether every one of these resources is shown to the principal without looking: the
    server's, or a regional administrator's unless one is of an owned type (another client's)."""
    if principal.role is Role.SERVER:
        return True
    return principal.sees_everything and not any(s.res_type in OWNED_TYPES for s in stored)


def _unique_rids(versions: Sequence[StoredResource]) -> list[StoredResource]:
    seen: dict[int, StoredResource] = {}
    for v in versions:
        seen.setdefault(v.rid, v)
    return list(seen.values())


__all__ = ["AccessPolicy", "ScopedReads", "unauthorized"]
