"""The SQL test of one value against one index table, per search parameter type.

Each function returns a boolean SQL expression over the columns of its index table; compile.py
wraps it in `rid IN (SELECT rid FROM idx_x WHERE res_type = … AND param = … AND <test>)`.
A value compared for equality or as a prefix is cut to its column first, as indexing cut the
stored one (search/fit.py).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, and_, false, literal, or_

from fhirsrv.errors import BadRequest
from fhirsrv.search.fit import fit
from fhirsrv.search.normalize import date_range, fold, now_utc, number_range, shifted
from fhirsrv.search.parameters import prefix_of, split_token
from fhirsrv.storage.schema import idx_date, idx_number, idx_reference, idx_string, idx_token, idx_uri


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_TOP = "\U0010ffff"  # the highest code point: every string starting with p sorts below p + _TOP


def string_test(value: str, modifier: str | None, ordered: bool = False) -> ColumnElement[bool]:
    """`ordered`: the database compares text by code point, so a starts-with search is a range
    the (res_type, param, value_norm) index serves. The range alone, without the equivalent LIKE:
    the planner multiplies the selectivities of both, guesses a handful of rows where there are
    thousands, and then picks plans that compute every match (seen on a chained name search)."""
    if modifier == "exact":
        return idx_string.c.value_exact == fit(idx_string.c.value_exact, value)
    if modifier == "@eq":
        return idx_string.c.value_norm == fit(idx_string.c.value_norm, fold(value))
    folded = _like_escape(fold(value))
    if modifier == "@ew":
        return idx_string.c.value_norm.like(f"%{folded}", escape="\\")
    if modifier == "contains":
        return idx_string.c.value_norm.like(f"%{folded}%", escape="\\")
    if modifier in (None, ""):
        prefix = fit(idx_string.c.value_norm, fold(value))
        starts = idx_string.c.value_norm.like(f"{_like_escape(prefix)}%", escape="\\")
        if ordered and prefix:
            col = idx_string.c.value_norm
            return and_(col >= prefix, col < prefix + _TOP)
        return starts
    raise BadRequest(f"Modifier :{modifier} is not supported on string parameters")


def token_test(value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "text":
        prefix = fit(idx_token.c.text_norm, fold(value))
        return idx_token.c.text_norm.like(f"{_like_escape(prefix)}%", escape="\\")
    system, code = split_token(value)
    code = fit(idx_token.c.code, code)
    system = None if system is None else fit(idx_token.c.system, system)
    if system is None:
        return idx_token.c.code == code
    if code == "":
        return idx_token.c.system == system
    if system == "":
        return and_(idx_token.c.system.is_(None), idx_token.c.code == code)
    return and_(idx_token.c.system == system, idx_token.c.code == code)


def reference_test(
    value: str, modifier: str | None, targets: tuple[str, ...], bases: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    """`bases`: this server's base URLs (the configured public one, the one the client used):
    an absolute reference on one of them is a local reference."""
    if modifier == "identifier":
        system, code = split_token(value)
        code = fit(idx_reference.c.ident_value, code)
        system = None if system is None else fit(idx_reference.c.ident_system, system)
        if system is None:
            return idx_reference.c.ident_value == code
        return and_(idx_reference.c.ident_system == system, idx_reference.c.ident_value == code)
    own = next((b for b in bases if b and value.startswith(b + "/")), None)
    if own is not None:
        value = value[len(own) + 1 :]
    if "://" in value or value.startswith("urn:"):
        url = value.split("|", 1)[0]
        return or_(
            idx_reference.c.url == fit(idx_reference.c.url, url),
            idx_reference.c.url.like(f"{_like_escape(url)}|%", escape="\\"),
        )
    parts = value.split("/")
    version = None
    if len(parts) >= 3 and parts[-2] == "_history":
        # A versioned reference matches the references to that version only: the index keeps
        # the version a resource cites (extract._reference); without one, any version matches.
        version, parts = parts[-1], parts[:-2]
    res_id = fit(idx_reference.c.target_id, parts[-1])
    if len(parts) >= 2:
        types: tuple[str, ...] | None = (parts[-2],)
    elif modifier and modifier[:1].isupper():
        types = (modifier,)
    else:
        types = targets or None
    test = idx_reference.c.target_id == res_id
    if types is not None:
        of_type = idx_reference.c.target_type
        test = and_(of_type == types[0] if len(types) == 1 else of_type.in_(types), test)
    if version is None:
        return test
    if types is None:
        cited = f"%/{_like_escape(res_id)}/_history/{_like_escape(version)}"
        return and_(test, idx_reference.c.url.like(cited, escape="\\"))
    cited = [fit(idx_reference.c.url, f"{t}/{parts[-1]}/_history/{version}") for t in types]
    return and_(test, idx_reference.c.url.in_(cited))


def date_test(value: str) -> ColumnElement[bool]:
    prefix, text = prefix_of(value)
    parsed = date_range(text)
    if parsed is None:
        raise BadRequest(f"'{value}' is not a valid date search value (e.g. ge2024-01-01)")
    low, high = parsed
    t_low, t_high = idx_date.c.low, idx_date.c.high
    contained = and_(t_low >= low, t_high <= high)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return ~contained
    if prefix == "gt":
        return t_high > high
    if prefix == "lt":
        return t_low < low
    if prefix == "ge":
        return or_(t_high > high, contained)
    if prefix == "le":
        return or_(t_low < low, contained)
    if prefix == "sa":
        return t_low > high
    if prefix == "eb":
        return t_high < low
    # ap: the ranges overlap once the searched one is widened by a tenth of its distance to
    # now (R4's recommendation), and at least by a day.
    margin = max(abs(now_utc() - low) // 10, timedelta(days=1))
    return and_(t_low <= shifted(high, margin), t_high >= shifted(low, -margin))


def number_test(value: str, quantity: bool = False) -> ColumnElement[bool]:
    prefix, text = prefix_of(value)
    system = code = None
    if quantity and "|" in text:
        text, system, code = (text.split("|") + ["", ""])[:3]
    parsed = number_range(text)
    if parsed is None:
        raise BadRequest(f"'{value}' is not a valid number search value")
    number, low, high = parsed
    col = idx_number.c.value
    tests = {
        "eq": and_(col >= low, col < high),
        "ne": ~and_(col >= low, col < high),
        "gt": col > number,
        "lt": col < number,
        "ge": col >= number,
        "le": col <= number,
        "sa": col > number,
        "eb": col < number,
        "ap": and_(col >= number - abs(number) * 0.1, col <= number + abs(number) * 0.1),
    }
    test = tests[prefix]
    if system:
        test = and_(test, idx_number.c.system == fit(idx_number.c.system, system))
    if code:
        test = and_(test, idx_number.c.code == fit(idx_number.c.code, code))
    return test


def uri_test(value: str, modifier: str | None) -> ColumnElement[bool]:
    col = idx_uri.c.value
    if modifier == "below":
        return col.like(f"{_like_escape(fit(col, value))}%", escape="\\")
    if modifier == "above":
        return literal(value).like(col + "%")
    if modifier in (None, ""):
        return col == fit(col, value)
    raise BadRequest(f"Modifier :{modifier} is not supported on uri parameters")


NOTHING = false()
