"""Bundle.total by `_total` mode: none, an estimate, or an exact count.

An exact count visits every match; at a million resources a broad search has tens of thousands
of them and counting costs more than the page itself. So `estimate` (the default, setting
FHIRSRV_DEFAULT_TOTAL) counts exactly up to a bound (FHIRSRV_EXACT_TOTAL_UP_TO, 1000), which
covers the searches people read page by page, and above it asks PostgreSQL's planner. The
planner's figure can fall short on chained searches, so it is never reported below the bound
just proven. SQLite has no such estimate and counts exactly. (A page found by walking rid
order on PostgreSQL, search/walk.py, estimates from the match rate it saw instead, but only
above the bound too: a rate seen over a page of one or two is no proof of anything.) The
bounded count of a chained search is streamed from the chain's innermost criterion
(search/streamed.py): it reads about the bound's worth of rows, not every match of every level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from fhirsrv.search import streamed

MODES = ("none", "estimate", "accurate")


def exact(conn: Connection, matches: Select) -> int:
    return int(conn.execute(select(func.count()).select_from(matches.subquery())).scalar_one())


class Explain(Executable, ClauseElement):
    """`EXPLAIN (FORMAT JSON) <statement>`, executed as a statement of its own.

    Compiling the statement to a string and sending that through the driver left its expanding
    binds unrendered (an `:in` value set's codes, a `_type` list: `IN (__[POSTCOMPILE_…])`),
    and PostgreSQL answered `column "__" does not exist`. As a construct, the statement is
    compiled and its lists expanded like any other query's."""

    inherit_cache = False

    def __init__(self, statement: Select) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def planner_rows(conn: Connection, matches: Select) -> int:
    plan = conn.execute(Explain(matches)).scalar_one()
    if isinstance(plan, (str, bytes)):
        plan = orjson.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def count(
    conn: Connection,
    matches: Select,
    mode: str,
    exact_up_to: int,
    estimate: Callable[[], int] | None = None,
) -> int | None:
    """The total by `mode`. `estimate`: a better guess than the planner's for above the bound
    (the walk's match rate), asked only once the bounded count has proven the bound exceeded:
    up to it the total is exact, whatever the page size or the path that found the page."""
    if mode == "none":
        return None
    if mode == "accurate" or conn.dialect.name != "postgresql":
        return exact(conn, matches)
    bounded = streamed.bounded_count(conn, matches, exact_up_to)
    if bounded is None:
        bounded = exact(conn, matches.limit(exact_up_to + 1))
    if bounded <= exact_up_to:
        return bounded
    return max(bounded, estimate() if estimate is not None else planner_rows(conn, matches))
