"""Parsing FHIR date/dateTime/instant values into naive UTC datetimes for storage queries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fhirsrv.errors import BadRequest

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_instant(value: str, name: str, *, end_of_period: bool = False) -> datetime:
    """A dateTime as naive UTC; a partial date (2026, 2026-11, 2026-11-22) is its first instant,
    or the last one when `end_of_period` (the `_at` of history)."""
    partial = _PARTIAL.match(value)
    try:
        if partial:
            year, month, day = partial.groups()
            start = datetime(int(year), int(month or 1), int(day or 1))
            if not end_of_period:
                return start
            if day:
                end = start + timedelta(days=1)
            elif month:
                end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1)
            else:
                end = datetime(start.year + 1, 1, 1)
            return end - timedelta(microseconds=1)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name}: '{value}' is not a FHIR date, dateTime or instant") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
