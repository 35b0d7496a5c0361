"""The `entry_access` and `structure_territory` rows: kept in step with every write, in the
write's own transaction, so visibility is never a step behind the data.

A resource's row holds its own facts (status, structure, person) and its derived
visibility: the strictest of its own status and its structure's. When a structure's status
changes, its offers, places, roles and endpoints change visibility with it, and so do the
people of those roles — all in the same transaction, so a reader never sees half an entry.

On PostgreSQL, a write to an entry takes a share lock on its structure's row first: the
structure's own write holds that row exclusively until it commits, so a new offer either waits
and then sees the structure's new status, or commits first and is refreshed by the
structure's write. SQLite has one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    delete,
    exists,
    insert,
    or_,
    select,
    text,
    true,
    update,
)

from fhirsrv.access.facts import (
    GOVERNED_TYPES,
    PUBLIC_STATUSES,
    RETIRED_STATUSES,
    FactReader,
    Facts,
)
from fhirsrv.storage import changes
from fhirsrv.storage.bulk import insert_tuples
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import (
    entry_access,
    idx_token,
    live,
    resource,
    resource_version,
    structure_territory,
)

ea = entry_access.c

DEPENDENT_TYPES = tuple(t for t in GOVERNED_TYPES if t not in ("Organization", "Practitioner"))


def _status_visibility(status: Any, *, absent: str) -> ColumnElement[str]:
    """An entry's visibility by its own status: leaving the directory makes it `retired`
    (still cited by id) only if it was listed once; a withdrawn application is hidden."""
    return case(
        (status.is_(None), absent),
        (status.in_(sorted(PUBLIC_STATUSES)), "public"),
        (and_(status.in_(sorted(RETIRED_STATUSES)), ea.listed), "retired"),
        else_="hidden",
    )


_DEFERRED = "fhirsrv.facts_deferred"


@dataclass
class _Pending:
    """What a deferred block wrote: new rows of a file load from `first_new` on, and the rows,
    structures and people that single writes (a transition's cascade) concern."""

    first_new: int | None = None
    rids: set[int] = field(default_factory=set)
    structures: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)


class FactStore:
    def __init__(self, reader: FactReader) -> None:
        self.reader = reader

    @contextmanager
    def deferred(self, conn: Connection) -> Iterator[None]:
        """A file load: bulk-created resources get their facts at once but their visibility in
        one pass when the file's transaction is about to commit, instead of one pass per chunk
        of 500 (which rescanned what earlier chunks wrote: 378 resources/s at 100k). Nothing
        else sees the transaction before then, so no reader can see a stale visibility."""
        if _DEFERRED in conn.info:  # already deferred by an outer frame: it refreshes
            yield
            return
        pending = _Pending()
        conn.info[_DEFERRED] = pending
        try:
            yield
            if pending.first_new is not None:
                analyze(conn)
                self._refresh_loaded(conn, pending.first_new)
            if pending.rids or pending.structures or pending.people:
                self.refresh(
                    conn, rids=sorted(pending.rids), structures=sorted(pending.structures), people=sorted(pending.people)
                )
        finally:
            conn.info.pop(_DEFERRED, None)

    # ------------------------------------------------------------------------------- writes
    def lock_structure(self, conn: Connection, res: dict[str, Any]) -> None:
        """Serialise an entry's write with its structure's (see the module's docstring)."""
        self.lock_structures(conn, [res])

    def lock_structures(self, conn: Connection, resources: Iterable[dict[str, Any]]) -> None:
        """`lock_structure` for many entries in one statement: a bulk load writes thousands
        of entries of a few hundred structures, and one round trip each cost a 20,000-resource
        load about a fifth of its time. The rows are locked in rid order, as any two batches
        of one structure set lock them alike."""
        if conn.dialect.name != "postgresql":
            return
        structures = {
            s
            for res in resources
            if res.get("resourceType") != "Organization" and (s := self.reader.structure(res)) is not None
        }
        if structures:
            conn.execute(
                select(resource.c.rid)
                .where(resource.c.res_type == "Organization", resource.c.res_id.in_(sorted(structures)))
                .order_by(resource.c.rid)
                .with_for_update(read=True)
            )

    def record(
        self, conn: Connection, stored: StoredResource, res: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        """Facts of a new version, then the visibility of everything they decide."""
        self.record_many(conn, [(stored, res)], previous=[previous] if previous else [])

    def record_many(
        self,
        conn: Connection,
        items: list[tuple[StoredResource, dict[str, Any]]],
        previous: Iterable[dict[str, Any]] = (),
        *,
        bulk: bool = False,
    ) -> None:
        """`bulk`: new resources of a file load; inside `deferred`, their visibility waits for
        the end of the file."""
        governed = [(s, self.reader.facts(res)) for s, res in items if s.res_type in GOVERNED_TYPES]
        if not governed:
            return
        rids = [s.rid for s, _ in governed]
        # What the replaced rows knew: an entry shown before stays `listed` (module docstring).
        shown: set[int] = set()
        for start in range(0, len(rids), 500):
            chunk = rids[start : start + 500]
            replaced = delete(entry_access).where(ea.rid.in_(chunk))
            shown.update(
                rid for rid, visibility, listed in conn.execute(replaced.returning(ea.rid, ea.visibility, ea.listed))
                if listed or visibility == "public"
            )
        # At driver speed (COPY): a file load records thousands at once, and a parameter dict
        # per row cost PostgreSQL a statement each (130 µs a row in a 20,000-resource load).
        insert_tuples(
            conn,
            entry_access,
            [
                (s.rid, s.res_type, f.status, f.structure, f.person, f.commune, "hidden", f.listed or s.rid in shown)
                for s, f in governed
            ],
            ("rid", "res_type", "status", "structure", "person", "commune", "visibility", "listed"),
        )
        orgs = [(s, f) for s, f in governed if s.res_type == "Organization"]
        self._territories(conn, orgs)
        pending = conn.info.get(_DEFERRED)
        if bulk and pending is not None:
            first = min(rids)
            pending.first_new = first if pending.first_new is None else min(pending.first_new, first)
            return
        people = {f.person for _, f in governed if f.person}
        people |= {p for p in (self.reader.facts(old).person for old in previous) if p}
        people |= {s.res_id for s, _ in governed if s.res_type == "Practitioner"}
        structures = {s.res_id for s, _ in orgs}
        if pending is not None:  # a transition's cascade: one refresh when it is complete
            pending.rids.update(rids)
            pending.structures.update(structures)
            pending.people.update(people)
            return
        self.refresh(conn, rids=rids, structures=sorted(structures), people=sorted(people))

    def deleted(self, conn: Connection, stored: StoredResource, previous: dict[str, Any] | None) -> None:
        """A deletion keeps the entry's facts (so a 410 is shown to whoever saw the entry) but
        what depended on it loses it: a deleted structure's offers are hidden, a deleted role no
        longer shows its person."""
        if stored.res_type not in GOVERNED_TYPES:
            return
        people = [p for p in ([self.reader.facts(previous).person] if previous else []) if p]
        structures = [stored.res_id] if stored.res_type == "Organization" else []
        pending = conn.info.get(_DEFERRED)
        if pending is not None:
            pending.structures.update(structures)
            pending.people.update(people)
            return
        self.refresh(conn, rids=[], structures=structures, people=people)

    def _territories(self, conn: Connection, orgs: list[tuple[StoredResource, Facts]]) -> None:
        ids = [s.res_id for s, _ in orgs]
        for start in range(0, len(ids), 500):
            conn.execute(
                delete(structure_territory).where(structure_territory.c.structure.in_(ids[start : start + 500]))
            )
        rows = [{"structure": s.res_id, "departement": d} for s, f in orgs for d in sorted(f.territory)]
        if rows:
            conn.execute(insert(structure_territory), rows)

    # ------------------------------------------------------------------------ visibility
    def refresh(
        self,
        conn: Connection,
        *,
        rids: list[int] | None = None,
        structures: list[str] | tuple[str, ...] = (),
        people: list[str] | tuple[str, ...] = (),
        everything: bool = False,
    ) -> None:
        """Recompute visibility: structures first, then what belongs to them, then people.

        `rids`: rows to recompute; `structures`: Organization ids whose entries (themselves and
        every dependent) to recompute; `people`: Practitioner ids; `everything`: all rows. The
        rows concerned are resolved first, so each UPDATE is a probe by key (an OR of
        subqueries made PostgreSQL scan the table once per statement). A file load uses
        `_refresh_loaded` instead."""
        if everything:
            self._structures_step(conn, None)
            self._dependents_step(conn, None)
            self._people_step(conn, None)
            self.mirror(conn, None)
            return
        org_scope, dependents_scope, people_scope = self._targets(
            conn, list(rids or []), list(structures), list(people)
        )
        self._structures_step(conn, org_scope)
        self._dependents_step(conn, dependents_scope)
        self._people_step(conn, people_scope)
        for where in (org_scope, dependents_scope, people_scope):
            if where is not False:
                self.mirror(conn, where)

    def mirror(self, conn: Connection, where: ColumnElement[bool] | None, *, from_rid: int | None = None) -> None:
        """Copy the visibility of the `entry_access` rows `where` selects (None: all) onto the
        rows searches read: their `resource` row and their token index rows (schema.py). Only
        rows that differ are written. Also after `fhirsrv reindex`, whose new index rows
        start hidden.

        `from_rid`: `where` selects rows from this rid on (a file load's new rows); said to the
        database on the rows updated too, which it cannot infer through the join: without it,
        each file of a load scanned every token row of the directory (quadratic over a load's
        files, the longest statement of a 1M load)."""
        public = ea.visibility == "public"
        entries = (
            update(resource)
            .where(resource.c.rid == ea.rid, resource.c.visibility != ea.visibility)
            .values(visibility=ea.visibility)
            .returning(resource.c.rid)
        )
        tokens = update(idx_token).where(idx_token.c.rid == ea.rid, idx_token.c.public != public)
        tokens = tokens.values(public=public)
        if from_rid is not None:
            entries = entries.where(resource.c.rid >= from_rid)
            tokens = tokens.where(idx_token.c.rid >= from_rid)
        # The change log tells syncing clients that these entries appeared or left (changes.py).
        changes.note_visibility(conn, conn.scalars(entries if where is None else entries.where(where)))
        conn.execute(tokens if where is None else tokens.where(where))

    # The three steps of a refresh, each on the rows `where` selects (None: all; False: none).
    def _structures_step(self, conn: Connection, where: Any) -> None:
        """Structures: their own status (none: not listed)."""
        if where is not False:
            self._set(conn, ("Organization",), _status_visibility(ea.status, absent="hidden"), where)

    def _dependents_step(self, conn: Connection, where: Any) -> None:
        """Offers, places, roles, endpoints: the stricter of their status and their structure's."""
        if where is False:
            return
        org = entry_access.alias("org")
        org_live = resource.alias("org_resource")

        def structure_is(*shown: str) -> Any:
            return exists(
                select(org.c.rid)
                .join(org_live, and_(org_live.c.rid == org.c.rid, live(org_live)))
                .where(org.c.res_type == "Organization", org.c.structure == ea.structure, org.c.visibility.in_(shown))
            )

        self._set(conn, DEPENDENT_TYPES, _status_visibility(ea.status, absent="public"), where)
        self._set(conn, DEPENDENT_TYPES, "hidden", where, ~structure_is("public", "retired"))
        self._set(conn, DEPENDENT_TYPES, "retired", where, ea.visibility == "public", structure_is("retired"))

    def _people_step(self, conn: Connection, where: Any) -> None:
        """People: as visible as their most visible live role."""
        if where is False:
            return
        role = entry_access.alias("role")
        role_live = resource.alias("role_resource")
        person = resource.alias("person")

        def a_role_is(shown: str) -> Any:
            return exists(
                select(role.c.rid)
                .join(role_live, and_(role_live.c.rid == role.c.rid, live(role_live)))
                .join(person, and_(person.c.res_type == "Practitioner", person.c.res_id == role.c.person))
                .where(role.c.res_type == "PractitionerRole", person.c.rid == ea.rid, role.c.visibility == shown)
            )

        self._set(conn, ("Practitioner",), "hidden", where)
        self._set(conn, ("Practitioner",), "retired", where, a_role_is("retired"))
        self._set(conn, ("Practitioner",), "public", where, a_role_is("public"))

    def _refresh_loaded(self, conn: Connection, first: int) -> None:
        """After a file load: the rows it added (rid >= first, a range), then the older rows
        its structures and roles decide. Ranges and hashed sets, never a subquery per row (an
        OR of IN-subqueries ran for over ten minutes on a file of 450k offers)."""
        new = ea.rid >= first
        loaded = entry_access.alias("loaded")
        new_structures = select(loaded.c.structure).where(loaded.c.res_type == "Organization", loaded.c.rid >= first)
        self._structures_step(conn, new)
        self._dependents_step(conn, new)
        self._dependents_step(conn, and_(ea.rid < first, ea.structure.in_(new_structures)))
        named = select(loaded.c.person).where(
            loaded.c.res_type == "PractitionerRole",
            loaded.c.person.is_not(None),
            or_(loaded.c.rid >= first, loaded.c.structure.in_(new_structures)),
        )
        older = resource.alias("older_person")
        older_people = and_(
            ea.rid < first,
            ea.rid.in_(select(older.c.rid).where(older.c.res_type == "Practitioner", older.c.res_id.in_(named))),
        )
        self._people_step(conn, new)
        self._people_step(conn, older_people)
        # One statement per part: an OR of them would be planned as a scan per row.
        self.mirror(conn, new, from_rid=first)
        for where in (and_(ea.rid < first, ea.structure.in_(new_structures)), older_people):
            self.mirror(conn, where)

    def _targets(
        self, conn: Connection, rids: list[int], structures: list[str], people: list[str]
    ) -> tuple[Any, Any, Any]:
        """The rows one write concerns, as explicit key lists (False: none of that kind)."""
        orgs = list(rids)
        deps = list(rids)
        persons = list(rids)
        dep = entry_access.alias("dep")  # an alias: a bare entry_access would be correlated
        of_roles = entry_access.alias("of_roles")
        org_rows = select(resource.c.rid).where(
            resource.c.res_type == "Organization", resource.c.res_id.in_(structures)
        )
        dependents = select(dep.c.rid).where(dep.c.structure.in_(structures), dep.c.res_type != "Organization")
        roles_people = select(of_roles.c.person).where(
            of_roles.c.structure.in_(structures),
            of_roles.c.res_type == "PractitionerRole",
            of_roles.c.person.is_not(None),
        )
        if structures:
            orgs += [r for (r,) in conn.execute(org_rows)]
            deps += [r for (r,) in conn.execute(dependents)]
            people = people + [p for (p,) in conn.execute(roles_people)]
        if people:
            persons += [
                r
                for (r,) in conn.execute(
                    select(resource.c.rid).where(resource.c.res_type == "Practitioner", resource.c.res_id.in_(people))
                )
            ]

        def keyed(found: list[int]) -> Any:
            return ea.rid.in_(sorted(set(found))) if found else False

        return keyed(orgs), keyed(deps), keyed(persons)

    def _set(
        self,
        conn: Connection,
        res_types: tuple[str, ...],
        value: Any,
        where: ColumnElement[bool] | None,
        *conditions: Any,
    ) -> None:
        statement = update(entry_access).where(ea.res_type.in_(res_types), *conditions)
        if where is not None:
            statement = statement.where(where)
        conn.execute(statement.values(visibility=value))

    # --------------------------------------------------------------------------- rebuild
    def rebuild(self, conn: Connection, res_type: str | None = None) -> int:
        """Every resource's facts from its content (start-up on an older database), in chunks,
        then every visibility.

        A deleted resource gets the facts of its last version before the deletion, as the write
        path leaves them (`deleted` above): whoever saw the entry is told it is gone (410) and
        may read its history, after an upgrade as before it."""
        types = GOVERNED_TYPES if res_type is None else (res_type,)
        live_rows = select(resource.c.rid, resource.c.res_type, resource.c.res_id, resource.c.content).where(
            live(resource), resource.c.res_type.in_(types)
        )
        count = 0
        batch: list[tuple[int, str, str, Facts]] = []
        for rows in (conn.execute(live_rows.order_by(resource.c.rid)), self._deleted_rows(conn, types)):
            for row in rows:
                batch.append((row.rid, row.res_type, row.res_id, self.reader.facts(loads(row.content))))
                if len(batch) >= 2000:
                    count += self._write_facts(conn, batch)
                    batch = []
        count += self._write_facts(conn, batch)
        self.refresh(conn, everything=True)
        return count

    @staticmethod
    def _deleted_rows(conn: Connection, types: tuple[str, ...]) -> Iterable[Any]:
        """(rid, res_type, res_id, content) of each deleted resource's last version with content."""
        v = resource_version.alias("v")
        later = resource_version.alias("later")
        last_content = ~exists(
            select(later.c.rid).where(
                later.c.rid == v.c.rid, later.c.version_id > v.c.version_id, later.c.content.is_not(None)
            )
        )
        query = (
            select(v.c.rid, v.c.res_type, v.c.res_id, v.c.content)
            .join(resource, resource.c.rid == v.c.rid)
            .where(resource.c.deleted == true(), resource.c.res_type.in_(types))
            .where(v.c.content.is_not(None), last_content)
            .order_by(v.c.rid)
        )
        return conn.execute(query)

    def _write_facts(self, conn: Connection, batch: list[tuple[int, str, str, Facts]]) -> int:
        if not batch:
            return 0
        rids = [rid for rid, *_ in batch]
        conn.execute(delete(entry_access).where(ea.rid.in_(rids)))
        conn.execute(
            insert(entry_access),
            [
                {
                    "rid": rid,
                    "res_type": t,
                    "status": f.status,
                    "structure": f.structure,
                    "person": f.person,
                    "commune": f.commune,
                    "visibility": "hidden",
                    "listed": f.listed,
                }
                for rid, t, _, f in batch
            ],
        )
        orgs = [(rid, i, f) for rid, t, i, f in batch if t == "Organization"]
        if orgs:
            conn.execute(
                delete(structure_territory).where(structure_territory.c.structure.in_([i for _, i, _ in orgs]))
            )
            rows = [{"structure": i, "departement": d} for _, i, f in orgs for d in sorted(f.territory)]
            if rows:
                conn.execute(insert(structure_territory), rows)
        return len(batch)

    def hide_never_listed(self, conn: Connection) -> list[int]:
        """Entries `retired` by their own status though never listed, with what depends on them,
        made hidden (start-up, once after migration 0017, which could not apply the rule's
        cascade itself); none on any later start. Returns their rids: once this has committed
        (the change log then holds their removal), `changes.forget_shown` clears their past."""
        found = conn.execute(
            select(ea.rid, ea.res_type, ea.structure, ea.person).where(
                ea.visibility == "retired", ea.status.is_not(None), ~ea.listed
            )
        ).all()
        if found:
            self.refresh(
                conn,
                rids=[r.rid for r in found],
                structures=sorted({r.structure for r in found if r.res_type == "Organization" and r.structure}),
                people=sorted({r.person for r in found if r.person}),
            )
        return [r.rid for r in found]

    def rebuild_if_missing(self, conn: Connection) -> bool:
        """A database written before these tables existed gets its facts once, at start-up."""
        has_facts = conn.execute(select(ea.rid).limit(1)).first() is not None
        if has_facts:
            return False
        governed = select(resource.c.rid).where(resource.c.res_type.in_(GOVERNED_TYPES)).limit(1)
        has_governed = conn.execute(governed).first() is not None
        if not has_governed:
            return False
        self.rebuild(conn)
        return True


def analyze(conn: Connection) -> None:
    """Fresh planner statistics for the access facts inside a loading transaction (PostgreSQL
    sees its own rows): without them it takes a type's visible rows for one and scans."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE entry_access"))
        conn.execute(text("ANALYZE structure_territory"))
