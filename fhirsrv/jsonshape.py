"""Two properties of received JSON that no later layer can handle, checked once, without recursion.

- Nesting: the structural walk and the profile validator recurse once or more per level, and
  Python stops at about a thousand frames: a resource nested a few hundred levels deep
  (extensions inside extensions) raised RecursionError, answered 500. No FHIR content needs
  the depth allowed here; a Questionnaire nested twenty items deep uses about sixty levels.
- NUL (U+0000): PostgreSQL cannot hold it in text, so a write or a search carrying one failed
  inside the database (500) there while SQLite stored it. R4 says strings SHOULD NOT contain
  characters below U+0020 other than tab, CR and LF; NUL is refused on every back-end alike.

The walk is iterative, so the check itself has no depth limit of its own.
"""

from __future__ import annotations

from typing import Any

# Levels of JSON arrays and objects in one body. The R4 models the server once validated with
# overflowed Python's stack at about 250 (two levels per extension); the walks that validate
# now take about one frame per level, so 100 keeps far from Python's limit.
MAX_JSON_DEPTH = 100
NUL = "\x00"


class JsonShapeError(ValueError):
    """Where (a JSON path such as `extension[0].extension[0]`) and what is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


_NUL_IN_VALUE = "the NUL character (U+0000) is not allowed in JSON strings"
_NUL_IN_NAME = "the NUL character (U+0000) is not allowed in a property name"


def check_json_shape(value: Any, max_depth: int = MAX_JSON_DEPTH, *, strings: bool = True) -> None:
    """Raise JsonShapeError at the first container nested deeper than `max_depth`, or the first
    string (value or property name) holding a NUL character.

    `strings=False` skips the strings, for a caller that already knows none holds a NUL (the
    JSON text of a NUL is the escape `\\u0000`, which a body without it cannot contain)."""
    if _first_problem(value, max_depth, strings, paths=False) is None:
        return
    # Walked again, the same way, spelling out paths: only for a body that is refused.
    path, message = _first_problem(value, max_depth, strings, paths=True) or ("", "")
    raise JsonShapeError(path.replace(NUL, "\\u0000"), message)  # shown as its JSON escape


def _first_problem(value: Any, max_depth: int, strings: bool, *, paths: bool) -> tuple[str, str] | None:
    """(JSON path, what is wrong) of the first problem in depth-first order, or None. Without
    `paths` the path is left empty: building it for every container tripled the walk's cost."""
    if type(value) is str:
        return ("", _NUL_IN_VALUE) if strings and NUL in value else None
    if not isinstance(value, dict | list):
        return None
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        is_object = type(node) is dict
        for key, item in node.items() if is_object else enumerate(node):
            where = ""
            if paths:
                where = (f"{path}.{key}" if path else key) if is_object else f"{path}[{key}]"
            kind = type(item)
            if strings and is_object and NUL in key:
                return where, _NUL_IN_NAME
            if kind is str:
                if strings and NUL in item:
                    return where, _NUL_IN_VALUE
            elif kind is dict or kind is list:
                if depth >= max_depth:
                    return (
                        where,
                        f"the JSON is nested more than {max_depth} levels deep (this server's limit)",
                    )
                stack.append((item, depth + 1, where))
    return None
