"""Parsing a search query into parameters: name, modifier, chain, prefixes, OR values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Parameters that steer the search rather than select resources.
CONTROL = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_contained",
    "_containedType",
    "_cursor",
    "_format",
    "_pretty",
    "_type",
    "_filter",
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass
class Criterion:
    """One `name[:modifier][.chain]=v1,v2` of a query (its values are OR-ed)."""

    raw_name: str
    name: str
    modifier: str | None
    chain: str | None  # the rest after the first dot: "name", "organization.name"
    values: list[str] = field(default_factory=list)
    tree: Any = None  # a parsed _filter expression (fhirsrv.search.filter)


def split_values(value: str) -> list[str]:
    """Split on commas that are not escaped with a backslash, then unescape."""
    parts = re.split(r"(?<!\\),", value)
    return [
        p.replace("\\,", ",").replace("\\|", "\x00").replace("\\$", "$").replace("\\\\", "\\") for p in parts
    ]


def split_token(value: str) -> tuple[str | None, str]:
    """'system|code' -> (system, code); '|code' -> ('', code); 'code' -> (None, code)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system.replace("\x00", "|"), code.replace("\x00", "|")
    return None, value.replace("\x00", "|")


def prefix_of(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] == "-"):
        return value[:2], value[2:]
    return "eq", value


def parse(name: str, value: str) -> Criterion:
    head, _, chain = name.partition(".")
    base, _, modifier = head.partition(":")
    return Criterion(name, base, modifier or None, chain or None, split_values(value))
