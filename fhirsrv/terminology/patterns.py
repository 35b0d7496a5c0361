"""The `regex` filters of ValueSets, matched by RE2: in time linear in the text, whatever the pattern.

Patterns come from ValueSets, and an inline one from any client of `$expand`. Python's `re`
backtracks: `.{7}(.*.*)*Zfreeze` took ×3 per character of the code, holding the interpreter
lock, so one request stalled every other client, and a slightly longer code would have run for
hours. RE2 never backtracks; the constructs that need it (backreferences, look-around) are not
in its language, and such a pattern is refused (400) rather than matched with `re`. XML Schema
patterns, which FHIR's `regex` follows, need neither.
"""

from __future__ import annotations

import re2

from fhirsrv.errors import BadRequest

# A pattern's length bounds the cost of compiling it; the memory of its compiled program is
# bounded by RE2 (below): a pattern past either is refused, never truncated.
MAX_PATTERN_LENGTH = 256
_PROGRAM_BYTES = 1 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = _PROGRAM_BYTES
    options.log_errors = False  # a client's bad pattern is its 400, not a line on the server's stderr
    return options


_OPTIONS = _options()


class Pattern:
    """A compiled `regex` filter value; `matches` is a full match, as XML Schema patterns are anchored."""

    def __init__(self, compiled: re2._Regexp) -> None:
        self._compiled = compiled

    def matches(self, text: str) -> bool:
        return self._compiled.fullmatch(text) is not None


def compile_filter(value: str) -> Pattern:
    """The pattern of a ValueSet filter; one RE2 cannot run in linear time, or that does not
    compile, is the ValueSet author's error (BadRequest, 400), not a server fault."""
    if len(value) > MAX_PATTERN_LENGTH:
        raise BadRequest(
            f"ValueSet filter regex is longer than {MAX_PATTERN_LENGTH} characters", code="too-costly"
        )
    try:
        # re2 keeps its own cache of compiled patterns: a filter tested against every code of a
        # code system is compiled once.
        return Pattern(re2.compile(value, _OPTIONS))
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise BadRequest(
            f"ValueSet filter regex '{value}' is not accepted: {reason} (this server matches patterns "
            "without backtracking: backreferences and look-around are not supported)"
        ) from exc
