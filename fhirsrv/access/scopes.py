"""SMART on FHIR scopes (v2 `system/Type.cruds`, v1 `system/Type.read|write`).

A scope grants interactions on a resource type; the role (roles.py) then says which entries.
Interactions: c create, r read/vread/history, u update/patch, d delete, s search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)(\?.*)?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class Grant:
    res_type: str  # "*" for every type
    interactions: frozenset[str]


def parse(scope_text: str) -> list[Grant]:
    """Parse a space-separated scope string; unknown or non-system scopes grant nothing."""
    grants = []
    for scope in scope_text.split():
        match = _SCOPE.match(scope)
        if not match or match.group(1) != "system" or match.group(4):
            continue
        letters = _V1.get(match.group(3), match.group(3))
        if letters:
            grants.append(Grant(match.group(2), frozenset(letters)))
    return grants


def is_valid(scope: str) -> bool:
    return bool(_SCOPE.match(scope))


def allows(grants: list[Grant], res_type: str, interaction: str) -> bool:
    return any(g.interactions.__contains__(interaction) and g.res_type in ("*", res_type) for g in grants)


def narrow(requested: str, allowed: str) -> str:
    """The requested scopes a client may have: each must be within one of its registered scopes."""
    granted = parse(allowed)
    kept = []
    for scope in requested.split():
        wanted = parse(scope)
        if wanted and all(
            all(allows(granted, w.res_type, i) for i in w.interactions)
            if w.res_type != "*"
            else any(g.res_type == "*" and w.interactions <= g.interactions for g in granted)
            for w in wanted
        ):
            kept.append(scope)
    return " ".join(kept)
