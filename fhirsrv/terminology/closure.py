"""The subsumption closure of each code system: one row per (ancestor, descendant), itself
included. `:below` searches and $subsumes read it instead of walking hierarchies per query."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.schema import code_closure, live, resource


def parents(codesystem: dict[str, Any]) -> dict[str, set[str]]:
    """code -> its direct parents, from nesting and from `parent` properties."""
    found: dict[str, set[str]] = {}

    def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
        for concept in concepts:
            code = concept.get("code")
            if not code:
                continue
            entry = found.setdefault(code, set())
            if parent:
                entry.add(parent)
            for prop in concept.get("property") or []:
                if prop.get("code") == "parent" and prop.get("valueCode"):
                    entry.add(prop["valueCode"])
            walk(concept.get("concept") or [], code)

    walk(codesystem.get("concept") or [], None)
    return found


def pairs(codesystem: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (ancestor, descendant) pair, reflexive ones included, so `is-a` is one lookup."""
    direct = parents(codesystem)
    for code in direct:
        seen, stack = {code}, [code]
        while stack:
            for parent in direct.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        for ancestor in seen:
            yield ancestor, code


def rebuild_closure(conn: Connection, codesystem: dict[str, Any]) -> None:
    """Replace the closure rows of this code system's url; called in the write transaction of a
    CodeSystem, so searches never see a hierarchy different from the stored resource."""
    system = codesystem.get("url")
    if not system:
        return
    conn.execute(delete(code_closure).where(code_closure.c.system == system))
    rows = [{"system": system, "ancestor": a, "descendant": d} for a, d in pairs(codesystem)]
    if rows:
        conn.execute(insert(code_closure), rows)


def drop_closure(conn: Connection, codesystem: dict[str, Any]) -> None:
    """Forget a deleted code system's hierarchy, so `:below` on it stops matching."""
    if codesystem.get("url"):
        conn.execute(delete(code_closure).where(code_closure.c.system == codesystem["url"]))


def rebuild_all(conn: Connection) -> int:
    """Rebuild the whole table from the stored CodeSystems (after a bulk load or a restore that
    bypassed the write path); returns how many code systems it indexed."""
    conn.execute(delete(code_closure))
    count = 0
    rows = conn.execute(select(resource.c.content).where(resource.c.res_type == "CodeSystem", live(resource)))
    for (content,) in rows.all():
        if content:
            rebuild_closure(conn, loads(content))
            count += 1
    return count
