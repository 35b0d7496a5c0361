"""Value normalisation shared by indexing and querying, so both sides always agree."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from fhirsrv.text import fold  # noqa: F401 - re-exported for the search modules

MIN_DATE = datetime(1, 1, 1)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999)
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(value: str) -> tuple[datetime, datetime] | None:
    """The instants a FHIR date/dateTime/instant covers, as naive UTC [low, high]."""
    match = _DATE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, tz = match.groups()
    try:
        if hour is None:
            low = datetime(int(year), int(month or 1), int(day or 1))
            if day:
                high = low + timedelta(days=1)
            elif month:
                high = datetime(low.year + (low.month == 12), low.month % 12 + 1, 1)
            else:
                high = datetime(low.year + 1, 1, 1)
            return low, high - timedelta(microseconds=1)
        low = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int(float(fraction) * 1_000_000) if fraction else 0,
        )
    except ValueError:
        return None
    if tz:
        offset = timedelta(0) if tz == "Z" else timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        low = low - offset if tz.startswith("+") or tz == "Z" else low + offset
    if second is None:
        high = low + timedelta(minutes=1)
    elif fraction is None:
        high = low + timedelta(seconds=1)
    else:
        return low, low
    return low, high - timedelta(microseconds=1)


def number_range(text: str) -> tuple[float, float, float] | None:
    """(value, low, high) with the implicit precision of the written number: 100 -> [99.5, 100.5)."""
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    exponent = number.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(number), float(number - half), float(number + half)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
