"""Two properties of received JSON that no later layer can handle, checked once, without recursion.

- Nesting: the R4 models (pydantic) and the JSON format walk recurse once or more per level,
  and Python stops at about a thousand frames: a resource nested a few hundred levels deep
  (extensions inside extensions) raised RecursionError, answered 500. No FHIR content needs
  the depth allowed here; a Questionnaire nested twenty items deep uses about sixty levels.
- NUL (U+0000): PostgreSQL cannot hold it in text, so a write or a search carrying one failed
  inside the database (500) there while SQLite stored it. R4 says strings SHOULD NOT contain
  characters below U+0020 other than tab, CR and LF; NUL is refused on every back-end alike.

The walk is iterative, so the check itself has no depth limit of its own.
"""

from __future__ import annotations

from typing import Any

# Levels of JSON arrays and objects in one body; the R4 models overflow Python's stack at
# about 250 (two levels per extension), so this keeps more than half of it in reserve.
MAX_JSON_DEPTH = 100
NUL = "\x00"


class JsonShapeError(ValueError):
    """Where (a JSON path such as `extension[0].extension[0]`) and what is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def _path(parents: dict[int, tuple[int, str]], node: int, key: str) -> str:
    """The JSON path of `key` under the container `node`, rebuilt only when a problem is found."""
    parts = [key]
    while node in parents:
        node, step = parents[node]
        parts.append(step)
    text = ""
    for part in reversed(parts):
        text += part if part.startswith("[") or not text else "." + part
    return text


def check_json_shape(value: Any, max_depth: int = MAX_JSON_DEPTH, *, strings: bool = True) -> None:
    """Raise JsonShapeError at the first container nested deeper than `max_depth`, or the first
    string (value or property name) holding a NUL character.

    `strings=False` skips the strings, for a caller that already knows none holds a NUL (the
    JSON text of a NUL is the escape `\\u0000`, which a body without it cannot contain)."""
    if isinstance(value, str):
        if strings and NUL in value:
            raise JsonShapeError("", "the NUL character (U+0000) is not allowed in JSON strings")
        return
    if not isinstance(value, dict | list):
        return
    parents: dict[int, tuple[int, str]] = {}  # container id -> (parent id, step), for paths
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            step = key if isinstance(key, str) else f"[{key}]"
            if strings and isinstance(key, str) and NUL in key:
                raise JsonShapeError(
                    _path(parents, id(node), "<key>"),
                    "the NUL character (U+0000) is not allowed in a property name",
                )
            if isinstance(item, str):
                if strings and NUL in item:
                    raise JsonShapeError(
                        _path(parents, id(node), step),
                        "the NUL character (U+0000) is not allowed in JSON strings",
                    )
            elif isinstance(item, dict | list):
                if depth >= max_depth:
                    raise JsonShapeError(
                        _path(parents, id(node), step),
                        f"the JSON is nested more than {max_depth} levels deep (this server's limit)",
                    )
                parents[id(item)] = (id(node), step)
                stack.append((item, depth + 1))
