"""Bundle.total by `_total` mode: none, an estimate, or an exact count.

An exact count visits every match; at a million resources a broad search has tens of thousands
of them and counting costs more than the page itself. So `estimate` (the default, setting
FHIRSRV_DEFAULT_TOTAL) counts exactly up to a bound (FHIRSRV_EXACT_TOTAL_UP_TO, 1000), which
covers the searches people read page by page, and above it asks PostgreSQL's planner. The
planner's figure can fall short on chained searches, so it is never reported below the bound
just proven. SQLite has no such estimate and counts exactly. (A first page found by walking rid
order on PostgreSQL, search/walk.py, estimates from the match rate it saw instead.)
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, Select, func, select

MODES = ("none", "estimate", "accurate")


def exact(conn: Connection, matches: Select) -> int:
    return int(conn.execute(select(func.count()).select_from(matches.subquery())).scalar_one())


def planner_rows(conn: Connection, matches: Select) -> int:
    compiled = matches.compile(dialect=conn.dialect)
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", compiled.params).scalar_one()
    if isinstance(plan, (str, bytes)):
        plan = orjson.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def count(conn: Connection, matches: Select, mode: str, exact_up_to: int) -> int | None:
    if mode == "none":
        return None
    if mode == "accurate" or conn.dialect.name != "postgresql":
        return exact(conn, matches)
    bounded = exact(conn, matches.limit(exact_up_to + 1))
    if bounded <= exact_up_to:
        return bounded
    return max(bounded, planner_rows(conn, matches))
