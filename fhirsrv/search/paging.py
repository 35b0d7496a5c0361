"""Sort keys and keyset paging: a page boundary is a position in the sort order, not an offset,
so following `next` while others write never repeats nor skips a match that did not change."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.sql import Select

from fhirsrv.errors import BadRequest
from fhirsrv.search import near
from fhirsrv.search.extract import SORTED_BY_COLUMN, SORTED_FROM_VALUES
from fhirsrv.search.parameters import Criterion
from fhirsrv.search.registry import SearchParamRegistry
from fhirsrv.search.scope import ReadScope
from fhirsrv.storage.schema import idx_reference, idx_sort, idx_token, idx_uri, resource

_HIGH_TEXT = "\U0010ffff"
_LOW_DATE, _HIGH_DATE = datetime(1, 1, 1), datetime(9999, 12, 31)


@dataclass(frozen=True)
class SortKey:
    code: str
    descending: bool


def parse_sort(values: list[str]) -> list[SortKey]:
    keys = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                keys.append(SortKey(item.lstrip("-"), item.startswith("-")))
    return keys


def sort_columns(
    query: Select,
    keys: list[SortKey],
    res_types: list[str],
    registry: SearchParamRegistry,
    criteria: Sequence[Criterion],
    scope: ReadScope,
    dialect: str = "postgresql",
) -> tuple[Select, list[tuple[ColumnElement[Any], bool]]]:
    """Join what each key needs; return the query and (expression, descending) pairs, rid last.

    Missing values sort last in both directions (a sentinel past the end of the range), except
    for `near`: the distance to the query's near point, missing positions counting as far away."""
    columns: list[tuple[ColumnElement[Any], bool]] = []
    for key in keys:
        if key.code in SORTED_BY_COLUMN:  # no sort rows: extract writes none for these
            column = resource.c.res_id if key.code == "_id" else resource.c.last_updated
            columns.append((column, key.descending))
            continue
        if key.code == "near":
            columns.append((near.sort_distance(list(criteria), res_types, scope), key.descending))
            continue
        params = [registry.get(t, key.code) for t in res_types]
        if not all(params):
            raise BadRequest(f"Cannot sort by '{key.code}': not a search parameter of {', '.join(res_types)}")
        kind = params[0].type  # type: ignore[union-attr]
        if kind in SORTED_FROM_VALUES:
            col = func.coalesce(_key_from_values(kind, key.code, dialect), "" if key.descending else _HIGH_TEXT)
            columns.append((col, key.descending))
            continue
        alias = idx_sort.alias()
        query = query.outerjoin(alias, and_(alias.c.rid == resource.c.rid, alias.c.param == key.code))
        if kind == "date":
            col = func.coalesce(alias.c.value_date, _LOW_DATE if key.descending else _HIGH_DATE)
        elif kind in ("number", "quantity"):
            col = func.coalesce(alias.c.value_num, -1e308 if key.descending else 1e308)
        else:
            col = func.coalesce(alias.c.value_text, "" if key.descending else _HIGH_TEXT)
        columns.append((col, key.descending))
    columns.append((resource.c.rid, False))
    return query, columns


def _key_from_values(kind: str, code: str, dialect: str) -> ColumnElement[Any]:
    """A resource's sort key for a token, reference or uri parameter, from that parameter's
    index rows: what extract.sort_row computed into a sort row, None when it has no value.

    The smallest value is the smallest by code point, as Python's min() took it: PostgreSQL's
    min() follows the database's collation, so it is told to compare by code point ("C"), and
    the key is then compared and ordered in the database's collation, as the sort row was."""
    if kind == "token":
        table = idx_token
        # An identifier's `:of-type` rows ("code|value") were among the rows sort_row read.
        params = (table.c.param == code) | (table.c.param == f"{code}:of-type")
        coded = select(func.min(_by_code_point(table.c.code, dialect))).where(
            table.c.rid == resource.c.rid, params, table.c.code != ""
        )
        texts = select(func.min(_by_code_point(func.coalesce(table.c.text_norm, ""), dialect))).where(
            table.c.rid == resource.c.rid, params
        )
        key = func.coalesce(coded.scalar_subquery(), texts.scalar_subquery())
    elif kind == "reference":
        table = idx_reference
        value = case(
            (
                func.coalesce(table.c.target_id, "") != "",
                table.c.target_type + literal("/") + table.c.target_id,
            ),
            else_=func.coalesce(table.c.url, ""),
        )
        key = (
            select(func.min(_by_code_point(value, dialect)))
            .where(table.c.rid == resource.c.rid, table.c.param == code)
            .scalar_subquery()
        )
    else:
        table = idx_uri
        key = (
            select(func.min(_by_code_point(table.c.value, dialect)))
            .where(table.c.rid == resource.c.rid, table.c.param == code)
            .scalar_subquery()
        )
    return key.collate("default") if dialect == "postgresql" else key


def _by_code_point(value: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """`value` compared by code point: SQLite always does; PostgreSQL does under "C"."""
    return value.collate("C") if dialect == "postgresql" else value


def order_by(
    columns: list[tuple[ColumnElement[Any], bool]], reverse: bool = False
) -> list[ColumnElement[Any]]:
    return [(col.asc() if desc == reverse else col.desc()) for col, desc in columns]


def after(
    columns: list[tuple[ColumnElement[Any], bool]], values: list[Any], backwards: bool = False
) -> ColumnElement[bool]:
    """Rows strictly after (or, backwards, before) the position `values` in the sort order."""
    options = []
    for i, (col, desc) in enumerate(columns):
        later = (col < values[i]) if (desc != backwards) else (col > values[i])
        equal = [c == values[j] for j, (c, _) in enumerate(columns[:i])]
        options.append(and_(*equal, later) if equal else later)
    return or_(*options)


def sort_signature(keys: Sequence[SortKey]) -> str:
    """The sort a cursor's values are positions in: `name,-_lastUpdated` (empty: by row id)."""
    return ",".join(("-" if k.descending else "") + k.code for k in keys)


def encode_cursor(values: list[Any], keys: Sequence[SortKey], backwards: bool = False) -> str:
    encoded = [{"d": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = orjson.dumps({"v": encoded, "b": backwards, "s": sort_signature(keys)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, keys: Sequence[SortKey]) -> tuple[list[Any], bool]:
    """The position and direction of a cursor issued for a search sorted by `keys`.

    A cursor holds values of its own sort's columns: one of another sort compared a date column
    with a name (PostgreSQL: 500), or read a position in one order as one in another. It is
    refused, as a cursor issued before cursors named their sort is."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        values = [datetime.fromisoformat(v["d"]) if isinstance(v, dict) else v for v in data["v"]]
        signature, backwards = data["s"], bool(data.get("b"))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadRequest("_cursor is not a paging token issued by this server") from exc
    if signature != sort_signature(keys):
        raise BadRequest(
            "_cursor does not belong to this search (its sort changed): start from the first page"
        )
    return values, backwards
