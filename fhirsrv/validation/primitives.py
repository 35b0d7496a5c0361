"""The value formats of R4's primitive types written as JSON strings (date, code, id, oid...).

Each rule is the one the fhir.resources models applied before this module replaced them (R4's
regexes, as fhir_core reads them), so a value refused then is refused now and the other way
round; tests/validation/test_structure_parity.py holds both to it. Where they read R4
loosely, that reading is kept and said so below (uri, url, markdown and xhtml take any
non-empty string, for one).

"Whitespace" is Unicode's White_Space property, as the models' regular expressions understood
\\s: not Python's str.isspace(), which also counts U+001C..U+001F.

A check returns what is wrong with the value, or None; it is only called on a non-empty string.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import date

_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A string needs one character that is not whitespace, or is a space, tab, CR or LF.
_BLANK = re.compile(f"[{_WS}]*")
_BLANK_ALLOWED = re.compile("[ \t\r\n]")
# A code: no leading or trailing whitespace, no two whitespace characters in a row.
_CODE = re.compile(f"[^{_WS}]+(?:[{_WS}][^{_WS}]+)*")
_ID = re.compile(r"[A-Za-z0-9\-.]+")
ID_MAX_CHARS = 255  # the models' limit (R4 says 64; the server's own ids keep to 64)
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_HEX = "[0-9a-fA-F]"
_HYPHENATED = rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The forms the models parsed: hyphenated (bare, after urn:uuid: or in braces), or 32 digits.
_UUID = re.compile(
    rf"urn:uuid:(?P<urn>{_HYPHENATED})|\{{(?P<braced>{_HYPHENATED})\}}"
    rf"|(?P<bare>{_HYPHENATED})|(?P<simple>{_HEX}{{32}})"
)
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|[+\-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_DATE_TIME = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_ZONE})?)?)?")
_INSTANT = re.compile(rf"{_YEAR}-{_MONTH_DAY}T{_TIME}{_ZONE}")
_TIME_OF_DAY = re.compile(_TIME)


def _string(value: str) -> str | None:
    if value.strip() or not _BLANK.fullmatch(value) or _BLANK_ALLOWED.search(value):
        return None
    return "a string needs a character other than whitespace"


def _code(value: str) -> str | None:
    if _CODE.fullmatch(value):
        return None
    return f"{_quoted(value)} is not a code: no leading, trailing or repeated whitespace"


def _id(value: str) -> str | None:
    if not _ID.fullmatch(value):
        return f"{_quoted(value)} is not an id: letters, digits, '-' and '.' only"
    if len(value) > ID_MAX_CHARS:
        return f"an id has at most {ID_MAX_CHARS} characters; this one has {len(value)}"
    return None


def _oid(value: str) -> str | None:
    return None if _OID.fullmatch(value) else f"{_quoted(value)} is not an oid (urn:oid:1.2.3...)"


def _uuid(value: str) -> str | None:
    match = _UUID.fullmatch(value)
    if match is None:
        return f"{_quoted(value)} is not a uuid (urn:uuid: and 8-4-4-4-12 hexadecimal digits)"
    digits = next(g for g in match.groups() if g).replace("-", "")
    # The models took only RFC 4122 version-4 UUIDs: version digit 4, variant 8, 9, a or b.
    if digits[12] != "4" or digits[16] not in "89abAB":
        return f"{_quoted(value)} is not a version 4 uuid"
    return None


def _base64(value: str) -> str | None:
    # As the models decoded it: characters outside the alphabet are skipped, padding must fit.
    try:
        base64.b64decode(value.encode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        return f"not base64: {exc}"
    return None


def _real_date(value: str) -> bool:
    """The date part of a full date (YYYY-MM-DD...) exists in the calendar."""
    if len(value) < 10:
        return True  # a year or a year and month: the pattern said enough
    try:
        date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _dated(pattern: re.Pattern[str], type_name: str, shape: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not pattern.fullmatch(value):
            return f"{_quoted(value)} is not a {type_name} ({shape})"
        if not _real_date(value):
            return f"{_quoted(value)} is not a {type_name}: there is no such day"
        return None

    return check


def _time(value: str) -> str | None:
    if _TIME_OF_DAY.fullmatch(value):
        return None
    return f"{_quoted(value)} is not a time (hh:mm:ss, no time zone)"


def _quoted(value: str) -> str:
    shown = value[:40] + ("…" if len(value) > 40 else "")
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


CHECKS: dict[str, Callable[[str], str | None]] = {
    "string": _string,
    "code": _code,
    "id": _id,
    "oid": _oid,
    "uuid": _uuid,
    "base64Binary": _base64,
    "date": _dated(_DATE, "date", "YYYY, YYYY-MM or YYYY-MM-DD"),
    "dateTime": _dated(_DATE_TIME, "dateTime", "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz"),
    "instant": _dated(_INSTANT, "instant", "YYYY-MM-DDThh:mm:ss.sss+zz:zz"),
    "time": _time,
}


def format_problem(type_name: str, value: str) -> str | None:
    """What is wrong with `value` (a non-empty string) as a `type_name`, or None. Types without a
    check (uri, url, canonical, markdown, xhtml) take any string."""
    check = CHECKS.get(type_name)
    return None if check is None else check(value)
