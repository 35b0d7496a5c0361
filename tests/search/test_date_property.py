"""Random dates against a brute-force reading of R4's date search rules.

The directory holds date, dateTime, instant and Period values of every precision, time zones
included, crowded around the edges of days, months and years; random searches (every prefix,
every precision, with and without a time zone) must find exactly what the rules below say.
The test runs on SQLite and on PostgreSQL (FHIRSRV_TEST_DATABASE_URL): both agreeing with the
same brute force, they agree with each other.

The rules (https://hl7.org/fhir/R4/search.html#prefix), on closed ranges of microseconds:
a date or dateTime covers every instant of its precision (a year, a month, a day, a minute, a
second, or a tenth, hundredth… of a second), an instant is one point, a Period runs from its
start's first instant to its end's last one and is open on a missing side. Values without a
time zone are read in UTC, the server's zone; instants outside 0001-9999 stop at those years.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhirsrv.search import clauses
from tests.search.directory import load

LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
ORG_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
NOW = datetime(2026, 11, 29, 12, 0, 0)  # `ap` is relative to now: the test fixes it
EPOCH = datetime(1, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
LOWEST, HIGHEST = 0, (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // MICRO
DAY = 86_400_000_000

YEARS = [2023, 2024, 2025]
ZONES = ["Z", "+00:00", "+01:00", "-05:00", "+05:30", "+14:00", "-12:00"]
PRECISIONS = ["year", "month", "day", "minute", "second", "fraction"]
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


# ------------------------------------------------------------------------------ brute force
def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICRO


def _clamp(value: int) -> int:
    return min(max(value, LOWEST), HIGHEST)


def covered(text: str, instant: bool = False) -> tuple[int, int]:
    """The closed range [first, last] of microseconds since 0001-01-01T00:00Z a value covers."""
    date_part, _, time_part = text.partition("T")
    pieces = [int(p) for p in date_part.split("-")]
    year, month, day = pieces[0], pieces[1] if len(pieces) > 1 else 1, pieces[2] if len(pieces) > 2 else 1
    if not time_part:
        start = datetime(year, month, day, tzinfo=UTC)
        if len(pieces) == 3:
            end = _micros(start) + DAY
        elif len(pieces) == 2:
            end = _micros(datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
        else:
            end = _micros(datetime(year + 1, 1, 1, tzinfo=UTC)) if year < 9999 else HIGHEST + 1
        return _clamp(_micros(start)), _clamp(end - 1)
    zone = UTC
    for sign in ("Z", "+", "-"):
        if sign in time_part:
            time_part, _, offset = time_part.partition(sign)
            if sign != "Z":
                hours, minutes = (int(x) for x in offset.split(":"))
                delta = timedelta(hours=hours, minutes=minutes)
                zone = timezone(delta if sign == "+" else -delta)
            break
    clock, _, fraction = time_part.partition(".")
    hms = [int(p) for p in clock.split(":")]
    width = 60_000_000 if len(hms) == 2 else 1_000_000
    micros = 0
    if fraction:
        width = 10 ** (6 - len(fraction))
        micros = int(fraction) * width
    local = datetime(year, month, day, hms[0], hms[1], hms[2] if len(hms) > 2 else 0, tzinfo=zone)
    # Offsets can carry an instant past year 1 or 9999: count in days then, not datetimes.
    first = (local.replace(tzinfo=None) - datetime(1, 1, 1)) // MICRO - (zone.utcoffset(None) // MICRO)
    first += micros
    last = first if instant else first + width - 1
    return _clamp(first), _clamp(last)


def matches(prefix: str, search: tuple[int, int], target: tuple[int, int]) -> bool:
    low, high = search
    t_low, t_high = target
    contained = low <= t_low and t_high <= high
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not contained
    if prefix == "gt":
        return t_high > high
    if prefix == "lt":
        return t_low < low
    if prefix == "ge":
        return t_high > high or contained
    if prefix == "le":
        return t_low < low or contained
    if prefix == "sa":
        return t_low > high
    if prefix == "eb":
        return t_high < low
    # ap: the ranges overlap once the searched one is widened by a tenth of its distance to
    # now, and at least by a day.
    margin = max(abs(_micros(NOW.replace(tzinfo=UTC)) - low) // 10, DAY)
    return t_low <= high + margin and t_high >= low - margin


# ---------------------------------------------------------------------------------- values
def written(rng: random.Random, precision: str, zone: str | None) -> str:
    """A value crowded around the edges: first and last days, months and minutes."""
    year = rng.choice(YEARS)
    month = rng.choice([1, 2, 12])
    day = rng.choice([1, 28, 29 if month == 2 and year == 2024 else 28, 31 if month != 2 else 1])
    text = f"{year:04d}"
    if precision == "year":
        return text
    text += f"-{month:02d}"
    if precision == "month":
        return text
    text += f"-{day:02d}"
    if precision == "day":
        return text
    text += f"T{rng.choice([0, 23]):02d}:{rng.choice([0, 30, 59]):02d}"
    if precision != "minute":
        text += f":{rng.choice([0, 59]):02d}"
    if precision == "fraction":
        text += "." + rng.choice(["0", "5", "9", "99", "999", "000", "999999", "123456"])
    return text + (zone or "")


def _timed(rng: random.Random) -> str:
    return written(rng, rng.choice(["second", "fraction"]), rng.choice(ZONES))


def _date_time(rng: random.Random) -> str:
    precision = rng.choice(["year", "month", "day", "second", "fraction"])
    return written(rng, precision, rng.choice(ZONES) if precision in ("second", "fraction") else None)


def directory(seed: int = 13, size: int = 30) -> list[tuple[dict[str, Any], tuple[int, int]]]:
    """(resource, the range its one date value covers), for the four kinds of element."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], tuple[int, int]]] = []
    for i in range(size):
        day = written(rng, rng.choice(["year", "month", "day"]), None)
        verified = {"url": LIFECYCLE, "extension": [{"url": "lastVerified", "valueDate": day}]}
        out.append(
            ({"resourceType": "HealthcareService", "id": f"hs{i}", "extension": [verified]}, covered(day))
        )
        end = _date_time(rng)
        closed = {"url": ORG_PERIOD, "valuePeriod": {"end": end}}
        out.append(({"resourceType": "Organization", "id": f"org{i}", "extension": [closed]}, covered(end)))
        recorded = _timed(rng)
        event = {
            "resourceType": "AuditEvent",
            "id": f"ae{i}",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "recorded": recorded,
            "agent": [{"requestor": True, "who": {"display": "test"}}],
            "source": {"observer": {"display": "test"}},
        }
        out.append((event, covered(recorded, instant=True)))
        start = _date_time(rng) if rng.random() < 0.8 else None
        stop = _date_time(rng) if rng.random() < 0.7 or start is None else None
        if start and stop and covered(start)[0] > covered(stop)[1]:
            start, stop = stop, start
        period = {k: v for k, v in (("start", start), ("end", stop)) if v}
        span = (covered(start)[0] if start else LOWEST, covered(stop)[1] if stop else HIGHEST)
        out.append(({"resourceType": "PractitionerRole", "id": f"role{i}", "period": period}, span))
    return out


SEARCHES = {
    "HealthcareService": "last-verified",
    "Organization": "period-end",
    "AuditEvent": "date",
    "PractitionerRole": "date",
}


ITEMS = directory()
_PARTS = re.compile(
    r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?$"
)


def _written_values(res: dict[str, Any]) -> list[str]:
    if res["resourceType"] == "HealthcareService":
        return [res["extension"][0]["extension"][0]["valueDate"]]
    if res["resourceType"] == "Organization":
        return [res["extension"][0]["valuePeriod"]["end"]]
    if res["resourceType"] == "AuditEvent":
        return [res["recorded"]]
    return list(res["period"].values())


def reprecise(text: str, precision: str, zone: str | None, digits: int) -> str:
    """`text` written to another precision (what is missing taken as the start of the unit),
    in `zone` ("keep": the time zone it had): a search right on the edges of a stored value."""
    match = _PARTS.match(text)
    assert match, text
    year, month, day, hour, minute, second, fraction, tz = match.groups()
    out = year
    if precision == "year":
        return out
    out += f"-{month or '01'}"
    if precision == "month":
        return out
    out += f"-{day or '01'}"
    if precision == "day":
        return out
    out += f"T{hour or '00'}:{minute or '00'}"
    if precision != "minute":
        out += f":{second or '00'}"
    if precision == "fraction":
        out += "." + ((fraction or "") + "000000")[:digits]
    return out + ((tz or "") if zone == "keep" else (zone or ""))


@pytest.fixture
def loaded(app, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(clauses, "now_utc", lambda: NOW)
    load(app.extensions["fhirsrv"], [res for res, _ in ITEMS])
    return app.test_client()


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, str, str]:
    """Half of the values are a stored value written to another precision, the rest random."""
    precision = draw(st.sampled_from(PRECISIONS))
    timed = precision in ("minute", "second", "fraction")
    if draw(st.booleans()):
        res = draw(st.sampled_from([res for res, _ in ITEMS]))
        res_type = res["resourceType"]
        zone = draw(st.sampled_from(["keep", None, *ZONES])) if timed else None
        stored = draw(st.sampled_from(_written_values(res)))
        value = reprecise(stored, precision, zone, draw(st.integers(1, 6)))
    else:
        res_type = draw(st.sampled_from(sorted(SEARCHES)))
        zone = draw(st.sampled_from([None, *ZONES])) if timed else None
        value = written(random.Random(draw(st.integers(0, 2**32))), precision, zone)
    if draw(st.integers(0, 30)) == 0:  # now and then, the far ends of what a date can say
        value = draw(
            st.sampled_from(["0001", "0001-01-01T00:00:00+01:00", "9999", "9999-12-31T23:59:59-05:00"])
        )
    return res_type, draw(st.sampled_from(PREFIXES)), value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(search=searches())
def test_date_search_agrees_with_the_r4_rules(loaded, search):  # type: ignore[no-untyped-def]
    res_type, prefix, value = search
    query = f"/fhir/{res_type}?{SEARCHES[res_type]}={prefix}{value.replace('+', '%2B')}&_count=200"
    res = loaded.get(query)
    assert res.status_code == 200, res.get_json()
    got = sorted(e["resource"]["id"] for e in res.get_json().get("entry", []))
    searched = covered(value)
    want = sorted(
        res["id"]
        for res, span in ITEMS
        if res["resourceType"] == res_type and matches(prefix, searched, span)
    )
    differing = {res["id"]: res for res, _ in ITEMS if res["id"] in set(got) ^ set(want)}
    assert got == want, (query, differing)
