"""The FHIR `_filter` expression language, compiled onto the same indexed subqueries.

    _filter=(service-category eq http://…|XXX) or (specialty eq http://…|YYY)
    _filter=_lastUpdated ge 2022-11-06T15:00 or organization._lastUpdated ge 2022-11-06T15:00

Grammar: expr := term ('or' term)* ; term := factor ('and' factor)* ;
factor := 'not'? '(' expr ')' | path op value. Paths chain with '.' (or ':' as some clients
write it); element names such as `providedBy` are accepted for the parameter built on them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhirsrv.errors import BadRequest, TooCostly
from fhirsrv.search.parameters import Criterion
from fhirsrv.settings import VARIABLES

OPERATORS = {
    "eq",
    "ne",
    "co",
    "sw",
    "ew",
    "gt",
    "lt",
    "ge",
    "le",
    "sa",
    "eb",
    "ap",
    "pr",
    "ss",
    "sb",
    "in",
    "ni",
    "re",
}
SUPPORTED = OPERATORS - {"ss", "sb", "in", "ni", "re"}
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')


@dataclass
class Compare:
    path: list[str]
    op: str
    value: str


@dataclass
class Logical:
    op: str  # and | or | not
    items: list[Any]


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise BadRequest(f"_filter: cannot read '{text[pos:]}'")
        out.append(match.group(1))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self.items = _tokens(text)
        self.pos = 0
        # Parentheses and `not` nest the parser's recursion: stopped at the limit, before
        # Python's own (a 500) or the database's parser stack (it overflowed at 20 on SQLite).
        self.max_depth = max_depth
        self.depth = 0

    def nested(self) -> Any:
        """A parenthesised expression, one level deeper (a `not` takes one too)."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise TooCostly(
                f"_filter nests parentheses or 'not' more than {self.max_depth} deep; this server "
                f"allows at most {self.max_depth} ({VARIABLES['max_filter_depth']})"
            )
        try:
            self.take()  # "(": both callers looked
            inner = self.expr()
            if self.take() != ")":
                raise BadRequest("_filter: missing ')'")
            return inner
        finally:
            self.depth -= 1

    def peek(self) -> str | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self) -> str:
        item = self.peek()
        if item is None:
            raise BadRequest("_filter: the expression ends too early")
        self.pos += 1
        return item

    def expr(self) -> Any:
        items = [self.term()]
        while (self.peek() or "").lower() == "or":
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Logical("or", items)

    def term(self) -> Any:
        items = [self.factor()]
        while (self.peek() or "").lower() == "and":
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else Logical("and", items)

    def factor(self) -> Any:
        if self.peek() == "(":
            return self.nested()
        head = self.take()
        if head.lower() == "not":
            if self.peek() != "(":
                raise BadRequest("_filter: 'not' must be followed by a parenthesised expression")
            return Logical("not", [self.nested()])
        op = self.take().lower()
        if op not in OPERATORS:
            raise BadRequest(f"_filter: '{op}' is not a filter operator")
        if op not in SUPPORTED:
            raise BadRequest(
                f"_filter: operator '{op}' is not supported by this server", code="not-supported"
            )
        value = self.take()
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return Compare(re.split(r"[.:]", head), op, value)


def parse_filter(text: str, max_depth: int) -> Any:
    parser = _Parser(text, max_depth)
    tree = parser.expr()
    if parser.peek() is not None:
        raise BadRequest(f"_filter: unexpected '{parser.peek()}'")
    return tree


def filter_criteria(text: str, max_depth: int) -> Criterion:
    return Criterion("_filter", "_filter", None, None, [text], tree=parse_filter(text, max_depth))


def comparisons(node: Any) -> Iterator[Compare]:
    """The comparisons of a parsed _filter, each of which compiles to a subquery."""
    if isinstance(node, Logical):
        for item in node.items:
            yield from comparisons(item)
    elif isinstance(node, Compare):
        yield node
