"""Two properties of received JSON that no later layer can handle, checked once, without recursion.

- Nesting: the structural walk and the profile validator recurse once or more per level, and
  Python stops at about a thousand frames: a resource nested a few hundred levels deep
  (extensions inside extensions) raised RecursionError, answered 500. No FHIR content needs
  the depth allowed here; a Questionnaire nested twenty items deep uses about sixty levels.
- Control characters: R4's strings hold no character below U+0020 but tab, CR and LF. NUL
  (U+0000) cannot be held in PostgreSQL's text at all: a write carrying one failed inside the
  database (500) while SQLite stored it. The others were stored and served back, where they
  break what reads them: XML (1.0 has no way to write them), a terminal showing a log or an
  export, a CSV opened in a spreadsheet. Every one is refused on every back-end alike, in
  values and in property names, so no stored string holds one.

The walk is iterative, so the check itself has no depth limit of its own.
"""

from __future__ import annotations

import re
from typing import Any

# Levels of JSON arrays and objects in one body. The R4 models the server once validated with
# overflowed Python's stack at about 250 (two levels per extension); the walks that validate
# now take about one frame per level, so 100 keeps far from Python's limit.
MAX_JSON_DEPTH = 100
NUL = "\x00"
# The characters below U+0020 that R4's strings may not hold: all but tab, LF and CR.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# How such a character is written in JSON text: `\u0001`, or `\b` and `\f` (JSON text holds
# none of them raw). A body without one of these holds no control character in any string; an
# escaped backslash before them (`\\b`) only costs a walk that finds nothing.
_ESCAPED_CONTROL = re.compile(rb"\\(?:u00[01][0-9a-fA-F]|[bf])")


class JsonShapeError(ValueError):
    """Where (a JSON path such as `extension[0].extension[0]`) and what is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def may_hold_control_characters(body: bytes) -> bool:
    """Whether the JSON text `body` may hold a control character in a string: when False, the
    strings need no walk (`check_json_shape(..., strings=False)`)."""
    return _ESCAPED_CONTROL.search(body) is not None


def _control_problem(text: str, where: str) -> str | None:
    """What is wrong with `text` as a string of `where` ("strings", "a property name"), or None.
    Most strings are printable, and `isprintable` is one pass in C: the pattern runs only on
    the rest (tab, line breaks, other Unicode separators)."""
    if text.isprintable():
        return None
    found = _CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    name = "the NUL character (U+0000)" if char == NUL else f"the control character U+{ord(char):04X}"
    return f"{name} is not allowed in {where} (FHIR strings admit tab, carriage return and line feed only)"


def _shown(path: str) -> str:
    """A path as the client would write it: a property name's control characters as JSON escapes."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", path)


def check_json_shape(value: Any, max_depth: int = MAX_JSON_DEPTH, *, strings: bool = True) -> None:
    """Raise JsonShapeError at the first container nested deeper than `max_depth`, or the first
    string (value or property name) holding a control character.

    `strings=False` skips the strings, for a caller that already knows none holds one
    (`may_hold_control_characters` of the JSON text it parsed)."""
    if _first_problem(value, max_depth, strings, paths=False) is None:
        return
    # Walked again, the same way, spelling out paths: only for a body that is refused.
    path, message = _first_problem(value, max_depth, strings, paths=True) or ("", "")
    raise JsonShapeError(_shown(path), message)


def _first_problem(value: Any, max_depth: int, strings: bool, *, paths: bool) -> tuple[str, str] | None:
    """(JSON path, what is wrong) of the first problem in depth-first order, or None. Without
    `paths` the path is left empty: building it for every container tripled the walk's cost."""
    if type(value) is str:
        problem = _control_problem(value, "strings") if strings else None
        return ("", problem) if problem else None
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
            if strings and is_object and (problem := _control_problem(key, "a property name")):
                return where, problem
            if kind is str:
                if strings and (problem := _control_problem(item, "strings")):
                    return where, problem
            elif kind is dict or kind is list:
                if depth >= max_depth:
                    return (
                        where,
                        f"the JSON is nested more than {max_depth} levels deep (this server's limit)",
                    )
                stack.append((item, depth + 1, where))
    return None
