"""Which date parameters index instants: R4 reads an instant as a point, any other date as the
range its precision spans (search.html#date), and the value alone does not tell them apart
(`2026-11-22T10:00:00Z` may be an instant or a dateTime to the second).

The element's type does: it is looked up along the parameter's path in the R4 model that
FHIRPath already ships (Meta.lastUpdated, AuditEvent.recorded are instants). A path this cannot
follow (an extension's value[x], a function) is taken for a dateTime.
"""

from __future__ import annotations

import re
from functools import lru_cache

from fhirpathpy.models import models

_MODEL = models["r4"]
_TYPES: dict[str, str] = _MODEL["path2Type"]
_PARENTS: dict[str, str] = _MODEL["type2Parent"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
# Backbone elements have no type of their own: their children are listed under their path.
_BACKBONES = {path.rsplit(".", 1)[0] for path in _TYPES}
_NAME = re.compile(r"^[a-z][A-Za-z]*$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_SAME = re.compile(r"^where\(.*\)$")


def _child(path: str, name: str) -> str | None:
    """The model path of `name` under `path` (a type, or a backbone element's path)."""
    owner: str | None = path
    while owner:
        found = f"{_ELSEWHERE.get(owner, owner)}.{name}"
        if found in _TYPES:
            return _TYPES[found]
        if found in _BACKBONES:
            return found
        owner = _PARENTS.get(owner)
    return None


def _type_of(alternative: str) -> str | None:
    steps = [step.strip() for step in alternative.split(".")]
    if not steps or not _TYPE.match(steps[0]):
        return None
    current: str | None = steps[0]
    for step in steps[1:]:
        if current is None:
            return None
        if _SAME.match(step):
            continue
        if step.startswith("extension("):
            current = "Extension"
        elif _NAME.match(step):
            current = _child(current, step)
        else:
            return None
    return current


@lru_cache(maxsize=1024)
def is_instant(expression: str) -> bool:
    """Whether every alternative of a parameter's expression ends on an instant element."""
    alternatives = [a.strip() for a in expression.split("|") if a.strip()]
    return bool(alternatives) and all(_type_of(a) == "instant" for a in alternatives)
