"""JSON encoding used for storage and responses (orjson: several times faster than json)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def dumps_bytes(value: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)


def loads(value: str | bytes) -> Any:
    return orjson.loads(value)


def utcnow() -> datetime:
    """Naive UTC now, truncated to the millisecond shown in meta.lastUpdated.

    Truncating before storing keeps the database and meta.lastUpdated identical, so a client
    that syncs with `_since=<the lastUpdated it saw>` gets exactly what changed after it.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def later_than(previous: datetime | None, now: datetime) -> datetime:
    """A timestamp strictly after `previous`, so versions of one resource never tie."""
    if previous is not None and now <= previous:
        return previous + timedelta(milliseconds=1)
    return now


def format_instant(value: datetime) -> str:
    """FHIR instant in UTC with milliseconds: 2026-11-22T18:49:58.123+00:00. The year is
    written with four digits whatever it is (strftime's %Y drops leading zeros on glibc, and
    a `_since=0001-01-01T00:00:00Z` came back as '1-01-01…', which is no instant)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond // 1000:03d}+00:00"
    )
