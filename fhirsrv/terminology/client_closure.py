"""ConceptMap/$closure: named closure tables a client maintains from the server's subsumption.

A client (e.g. an analytics store of directory entries) keeps its own transitive closure table
of the concepts it has met, so it can query "everything under douleur" in its own SQL. It sends
each new concept once; the server answers with the new (descendant, ancestor) relationships
among all the concepts of that named table. The state lives in the database (closure_table,
closure_member), so any process of the server continues a table another one started, and the
relationships come from code_closure, the same table `:below` searches use.

A relationship's version is the later of the versions that added its two concepts: "what is new
since version k" (the resynchronisation of the spec) is then one query, and nothing but the
concepts needs storing. The cost of that choice: when a CodeSystem's hierarchy changes later, a
relationship between two concepts already sent is only delivered by a resynchronisation from an
earlier version (or a new table), not pushed to the client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from fhirsrv.errors import BadRequest, NotFound
from fhirsrv.storage.jsonfmt import format_instant, utcnow
from fhirsrv.storage.schema import closure_member, closure_table, code_closure

# As the columns of closure_table / closure_member allow.
NAME_MAX = 256
SYSTEM_MAX = 512
CODE_MAX = 256


def _check_name(name: str | None) -> str:
    if not name or not name.strip():
        raise BadRequest("$closure needs the 'name' of the closure table")
    if len(name) > NAME_MAX:
        raise BadRequest(f"A closure table name is at most {NAME_MAX} characters")
    return name


def initialise(conn: Connection, owner: str, name: str) -> dict[str, Any]:
    """Create the table, or empty it when it exists (the client starts its table over); version 0.

    An upsert, so two processes initialising the same name at once do not collide."""
    name = _check_name(name)
    conn.execute(delete(closure_member).where(closure_member.c.owner == owner, closure_member.c.name == name))
    values = {"owner": owner, "name": name, "version": 0, "created": utcnow()}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(closure_table).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["owner", "name"], set_={"version": 0, "created": values["created"]}
        )
    )
    return _concept_map(name, 0, [])


def _locked_version(conn: Connection, owner: str, name: str) -> int:
    """The table's current version, its header row locked until commit (PostgreSQL; SQLite
    writes are serialised by BEGIN IMMEDIATE), so concurrent calls on one table queue."""
    version = conn.execute(
        select(closure_table.c.version)
        .where(closure_table.c.owner == owner, closure_table.c.name == name)
        .with_for_update()
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(
            f"The closure table '{name}' is not known: initialise it with a $closure call giving only "
            "its name"
        )
    return int(version)


def _codings(concepts: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    for coding in concepts:
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str) or not system or not code:
            raise BadRequest("Each $closure concept is a Coding with a system and a code")
        if len(system) > SYSTEM_MAX or len(code) > CODE_MAX:
            raise BadRequest(f"A $closure concept's system or code is too long: {system}#{code[:40]}")
        found[(system, code)] = None
    return list(found)


def add_concepts(
    conn: Connection, owner: str, name: str, concepts: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """Add the concepts the table does not have yet, under a new version, and return the new
    relationships they bring. Concepts already there add nothing (no new version)."""
    name = _check_name(name)
    wanted = _codings(concepts)
    version = _locked_version(conn, owner, name)
    known: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start : start + 500]
        known |= {
            (s, c)
            for s, c in conn.execute(
                select(closure_member.c.system, closure_member.c.code).where(
                    closure_member.c.owner == owner,
                    closure_member.c.name == name,
                    tuple_(closure_member.c.system, closure_member.c.code).in_(chunk),
                )
            )
        }
    new = [pair for pair in wanted if pair not in known]
    if not new:
        return _concept_map(name, version, [])
    version += 1
    conn.execute(
        insert(closure_member),
        [{"owner": owner, "name": name, "system": s, "code": c, "version": version} for s, c in new],
    )
    conn.execute(
        update(closure_table)
        .where(closure_table.c.owner == owner, closure_table.c.name == name)
        .values(version=version)
    )
    return _concept_map(name, version, _relationships_since(conn, owner, name, version - 1))


def resynchronise(conn: Connection, owner: str, name: str, since: str) -> dict[str, Any]:
    """Every relationship added after version `since`: what a client that lost answers after
    that version must apply to catch up ("0" rebuilds its whole table)."""
    name = _check_name(name)
    try:
        after = int(since)
    except ValueError as exc:
        raise BadRequest(f"$closure version '{since}' is not a version this server gave") from exc
    version = _locked_version(conn, owner, name)
    if after < 0 or after > version:
        raise BadRequest(f"$closure version '{since}' is not a version of table '{name}' (now {version})")
    return _concept_map(name, version, _relationships_since(conn, owner, name, after))


def _relationships_since(conn: Connection, owner: str, name: str, after: int) -> list[tuple[str, str, str]]:
    """(system, descendant, ancestor) between members of the table, at least one of them added
    after version `after`: one join of the members with code_closure, reflexive rows left out."""
    anc = closure_member.alias("anc")
    desc = closure_member.alias("desc")
    rows = conn.execute(
        select(code_closure.c.system, code_closure.c.descendant, code_closure.c.ancestor)
        .select_from(
            anc.join(
                code_closure,
                and_(code_closure.c.system == anc.c.system, code_closure.c.ancestor == anc.c.code),
            ).join(
                desc,
                and_(
                    desc.c.owner == anc.c.owner,
                    desc.c.name == anc.c.name,
                    desc.c.system == code_closure.c.system,
                    desc.c.code == code_closure.c.descendant,
                ),
            )
        )
        .where(
            anc.c.owner == owner,
            anc.c.name == name,
            code_closure.c.ancestor != code_closure.c.descendant,
            (anc.c.version > after) | (desc.c.version > after),
        )
        .distinct()
    )
    return sorted((s, d, a) for s, d, a in rows)


def _concept_map(name: str, version: int, relationships: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The answer: one group per code system, one element per descendant, its new ancestors as
    targets with equivalence `subsumes` (R4: the target subsumes the source, source is-a target)."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for system, descendant, ancestor in relationships:
        groups.setdefault(system, {}).setdefault(descendant, []).append(
            {"code": ancestor, "equivalence": "subsumes"}
        )
    cm: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "id": str(uuid.uuid4()),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "version": str(version),
        "title": f"Updates for closure table {name}",
        "status": "active",
        "experimental": True,
        "date": format_instant(utcnow()),
    }
    if groups:
        cm["group"] = [
            {
                "source": system,
                "target": system,
                "element": [{"code": code, "target": targets} for code, targets in elements.items()],
            }
            for system, elements in groups.items()
        ]
    return cm
