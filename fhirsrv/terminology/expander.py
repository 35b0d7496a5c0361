"""SQL building blocks for code searches: the (system, code) pairs below or above a code, and the
pairs of a ValueSet. The search engine can use them as subqueries, so `:below`, `:above` and `:in`
are one indexed join, whatever the depth of the hierarchy or the size of the ValueSet."""

from __future__ import annotations

from sqlalchemy import Connection, Select, String, false, literal, select, union_all

from fhirsrv.storage.schema import code_closure
from fhirsrv.terminology.valueset import valueset_pairs


def below(system: str, code: str) -> Select[tuple[str, str]]:
    """The code and every code it subsumes (`:below`), from the closure table."""
    return select(code_closure.c.system, code_closure.c.descendant.label("code")).where(
        code_closure.c.system == system, code_closure.c.ancestor == code
    )


def above(system: str, code: str) -> Select[tuple[str, str]]:
    """The code and every code that subsumes it (`:above`), from the closure table."""
    return select(code_closure.c.system, code_closure.c.ancestor.label("code")).where(
        code_closure.c.system == system, code_closure.c.descendant == code
    )


def in_valueset(conn: Connection, url: str) -> Select[tuple[str, str]]:
    """The ValueSet's pairs as a select of literal rows (portable: SQLite has no VALUES aliases)."""
    pairs = valueset_pairs(conn, url)
    if not pairs:
        return select(literal("", String).label("system"), literal("", String).label("code")).where(false())
    rows = [
        select(literal(system, String).label("system"), literal(code, String).label("code"))
        for system, code in pairs
    ]
    return rows[0] if len(rows) == 1 else union_all(*rows)  # type: ignore[return-value]
