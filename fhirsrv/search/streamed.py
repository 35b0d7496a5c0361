"""The bounded count of a chained search, streamed from its innermost criterion outwards.

A chain compiles to nested semi-joins (compile.py):

    resource.rid IN (SELECT idx_reference.rid ... WHERE target_id IN
        (SELECT t.res_id FROM resource t WHERE ... AND t.rid IN
            (SELECT idx_string.rid FROM idx_string WHERE value_norm >= 'maison' ...)))

Counting its matches up to FHIRSRV_EXACT_TOTAL_UP_TO (search/total.py) only needs a thousand
of them, but PostgreSQL de-duplicates each IN list before joining it (a HashAggregate), and that
reads every match at every level first: every Organization named `maison*`, every reference to
each of them. That grows with the directory, for the same thousand matches: 17 ms of a 25 ms
search at 100k resources, and the search took 181 ms at 1M (bench/policy_bench.py).

Streamed, the same levels are joined as they are read: each row of the innermost subquery is
looked up one level out (a LATERAL subquery, an index probe), and so on up to the searched
rows, which stop once a thousand distinct ones are seen. The work is then about the bound,
not the directory: a few thousand index probes whatever its size. Duplicates (an Organization
with two names both starting with the value, an offer citing one twice) are counted once, in
Python, as the rows arrive: the count is exactly what counting the semi-joins would give.

Only for a straight chain: each level holds one IN subquery among its conditions, ANDed. Any
other shape (two criteria, an OR of target types, a negation) is counted as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, select, true
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause, Grouping

# Levels holding an IN, the searched rows' included, from which streaming pays: a chain has
# three (the searched rows, the references, the targets) above the targets' index. A plain
# criterion has one and is left to the database: de-duplicating one index range is cheap, and
# the probes after it stop at the bound.
MIN_LEVELS = 3


def one_column_select(operand: Any) -> Select | None:
    """The SELECT of one column an IN's right operand is (under its parentheses), else None."""
    while isinstance(operand, Grouping):
        operand = operand.element
    operand = getattr(operand, "element", operand)  # a ScalarSelect wraps its Select
    if not isinstance(operand, Select) or len(operand.selected_columns) != 1:
        return None
    return operand


def in_subquery(element: Any) -> Select | None:
    """The subquery of `column IN (SELECT one column ...)`, None for any other expression."""
    if not isinstance(element, BinaryExpression) or element.operator is not operators.in_op:
        return None
    return one_column_select(element.right)


@dataclass
class _Level:
    query: Select  # the level's rows, its IN condition dropped
    column: ColumnElement[Any]  # the column the IN tested (joined to the level below)


def _conjuncts(query: Select) -> list[ColumnElement[bool]]:
    """The conditions of the query's WHERE that all must hold, nested ANDs flattened (a chain's
    target test comes ANDed with the caller's visibility of the targets)."""

    def flat(element: Any) -> list[ColumnElement[bool]]:
        while isinstance(element, Grouping):
            element = element.element
        if isinstance(element, BooleanClauseList) and element.operator is operators.and_:
            return [c for clause in element.clauses for c in flat(clause)]
        return [element]

    where = query.whereclause
    return [] if where is None else flat(where)


def _table(query: Select) -> Any:
    """The one table a subquery reads, None when it reads several, or reads it in a way a
    join would change (limit, grouping, distinct): the FROMs its columns and conditions name,
    as SQLAlchemy derives them, without compiling the statement (which costs a millisecond)."""
    if (
        query._from_obj
        or query._limit_clause is not None
        or query._offset_clause is not None
        or query._group_by_clauses
        or query._distinct
        or query._order_by_clauses
        or query._having_criteria
    ):
        return None
    froms = set(query.columns_clause_froms)
    for condition in query._where_criteria:
        froms.update(condition._from_objects)  # a subquery in a condition names none
    return froms.pop() if len(froms) == 1 else None


def _levels(matches: Select) -> tuple[list[_Level], Select] | None:
    """The chain of `matches`: its levels from the searched rows inwards, and the innermost
    subquery (the one holding no IN); None unless each level holds exactly one IN."""
    levels: list[_Level] = []
    query = matches
    while True:
        table = _table(query)
        if table is None:
            return None
        conjuncts = _conjuncts(query)
        found = [(c, in_subquery(c)) for c in conjuncts]
        nested = [(c, sub) for c, sub in found if sub is not None]
        if not nested:
            return levels, query
        if len(nested) != 1:
            return None
        condition, sub = nested[0]
        column = condition.left  # type: ignore[attr-defined]
        if not isinstance(column, ColumnClause) or column.table is not table:
            return None
        levels.append(_Level(_where(query, [c for c in conjuncts if c is not condition]), column))
        query = sub


def _where(query: Select, conditions: list[ColumnElement[bool]]) -> Select:
    """The same plain subquery (see _table) with only these conditions."""
    return select(*query.selected_columns).where(*conditions)


def streamed(matches: Select) -> Select | None:
    """`matches` as a join streamed from its innermost subquery (rows may repeat), or None when
    it is not a straight chain of at least MIN_LEVELS INs."""
    found = _levels(matches)
    if found is None:
        return None
    levels, innermost = found
    if len(levels) < MIN_LEVELS:
        return None
    below = innermost.subquery()
    joined: Any = below
    value, previous = below.c[0], below
    for level in reversed(levels):
        # OFFSET 0: each level stays a probe per row below it, never a join the planner may
        # turn round into reading the whole level first.
        step = level.query.where(level.column == value).offset(0).correlate(previous).lateral()
        joined = joined.join(step, true())
        value, previous = step.c[0], step
    return select(value).select_from(joined)


def bounded_count(conn: Connection, matches: Select, up_to: int) -> int | None:
    """The number of distinct rows of `matches`, read up to `up_to` + 1 of them (what counting
    `matches LIMIT up_to + 1` gives), streamed when `matches` is a chain; None when it is not,
    on SQLite (which plans a correlated probe anew for every row), and outside a transaction
    (a server-side cursor lives in one)."""
    if conn.dialect.name != "postgresql" or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return None
    query = streamed(matches)
    if query is None:
        return None
    seen: set[Any] = set()
    # A server-side cursor: the database produces rows as they are fetched, and stops when
    # the cursor closes, once enough distinct ones have come. Fetched by the bound's worth: one
    # round trip when no row repeats (each one waits its turn for a core on a busy machine).
    result = conn.execute(query, execution_options={"yield_per": up_to + 1})
    try:
        for (rid,) in result:
            seen.add(rid)
            if len(seen) > up_to:
                break
    finally:
        result.close()
    return len(seen)
