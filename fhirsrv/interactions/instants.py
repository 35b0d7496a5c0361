"""Parsing FHIR date/dateTime/instant parameters (_since, _at) into naive UTC datetimes."""

from __future__ import annotations

from datetime import datetime

from fhirsrv.errors import BadRequest
from fhirsrv.search.normalize import date_range


def parse_instant(value: str, name: str, *, end_of_period: bool = False) -> datetime:
    """The first instant a value covers, or its last one when `end_of_period` (history's _at):
    2026 covers the whole year, 2026-11-22T10:00 a minute. The same rules as date search.
    A space stands for the '+' of an offset: a `meta.lastUpdated` (…+00:00) pasted into a URL
    unencoded arrives so, and no instant holds a space."""
    covered = date_range(value.replace(" ", "+"))
    if covered is None:
        raise BadRequest(f"{name}: '{value[:64]}' is not a FHIR date, dateTime or instant")
    return covered[1] if end_of_period else covered[0]
