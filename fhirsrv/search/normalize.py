"""Value normalisation shared by indexing and querying, so both sides always agree."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from fhirsrv.text import fold  # noqa: F401 - re-exported for the search modules

MIN_DATE = datetime(1, 1, 1)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999)
_MICRO = timedelta(microseconds=1)
_LAST = (MAX_DATE - MIN_DATE) // _MICRO  # MAX_DATE, in microseconds after MIN_DATE
_DAY = 86_400_000_000
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _first_of_month(year: int, month: int) -> int:
    """Microseconds from MIN_DATE to the first instant of a month (month 13: the next year's)."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    if year > MAX_DATE.year:
        return _LAST + 1
    return (datetime(year, month, 1) - MIN_DATE) // _MICRO


def _moment(micros: int) -> datetime:
    return MIN_DATE + timedelta(microseconds=min(max(micros, 0), _LAST))


def date_range(value: str, *, instant: bool = False) -> tuple[datetime, datetime] | None:
    """The instants a FHIR date, dateTime or instant covers, as naive UTC [low, high] to the
    microsecond (the resolution of both databases), or None when it is not one.

    R4 reads a date as the range its precision spans (search.html#date): a year, a month or a
    day; with a time, its minute, its second or as many fractional digits as written. An
    instant is a point (`instant`: the value is of that type). A value without a time zone is
    read in UTC, the server's zone. A range that an offset carries past year 1 or 9999 stops
    there: `ap0001` or `9999-12-31T23:00:00-05:00` are searches like any other, not errors."""
    match = _DATE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, tz = match.groups()
    try:
        start = datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    low = (start - MIN_DATE) // _MICRO
    if hour is None:
        if day:
            high = low + _DAY
        elif month:
            high = _first_of_month(start.year, start.month + 1)
        else:
            high = _first_of_month(start.year + 1, 1)
        return _moment(low), _moment(high - 1)
    if fraction:
        digits = fraction[1:7]
        low += int(digits.ljust(6, "0"))
        width = 10 ** (6 - len(digits))
    else:
        width = 60_000_000 if second is None else 1_000_000
    if tz and tz != "Z":
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        if hours > 14 or minutes > 59:
            return None
        offset = (hours * 60 + minutes) * 60_000_000
        low += -offset if tz[0] == "+" else offset
    high = low if instant else low + width - 1
    return _moment(low), _moment(high)


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta`, stopping at the first and last instants a date can hold."""
    return _moment((moment - MIN_DATE + delta) // _MICRO)


def number_range(text: str) -> tuple[float, float, float] | None:
    """(value, low, high) with the implicit precision of the written number: 100 -> [99.5, 100.5)."""
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    exponent = number.as_tuple().exponent
    # NaN, infinities and exponents past a float's range (`1e999999999`) are no numbers a
    # search can compare: None makes them a 400 rather than an overflow's 500.
    if not number.is_finite() or not isinstance(exponent, int) or not -300 <= exponent <= 300:
        return None
    if abs(number.adjusted()) > 300:
        return None
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(number), float(number - half), float(number + half)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
