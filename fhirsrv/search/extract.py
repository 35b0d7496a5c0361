"""Index rows for one resource, computed at write time from its search parameters.

Text longer than its index column is cut to it (search/fit.py), as search values are.

The shape of each value (Coding, Identifier, Reference, Period…) decides how it is indexed,
so the same code serves the R4 parameters and any SearchParameter posted later.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from fhirsrv.search.datetypes import is_instant
from fhirsrv.search.fit import fit_rows
from fhirsrv.search.normalize import MAX_DATE, MIN_DATE, date_range, fold, number_range
from fhirsrv.search.registry import SearchParamDef, SearchParamRegistry

Rows = dict[str, list[dict[str, Any]]]  # table name -> rows (without rid/res_type)


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _tokens(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, text) triples for a token-typed value."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    if isinstance(value, str):
        return [(None, value, None)]
    if not isinstance(value, dict):
        text = _str(value)
        return [(None, text, None)] if text else []
    if "coding" in value or "text" in value and "code" not in value and "value" not in value:
        text = value.get("text") if isinstance(value.get("text"), str) else None
        out = [
            (c.get("system"), c.get("code"), c.get("display") or text)
            for c in value.get("coding") or []
            if isinstance(c, dict)
        ]
        # `:text` reads the concept's text and the codings' displays (R4): the text gets its own
        # row (no code) when no coding already carries it.
        if text and all(label != text for _, _, label in out):
            out.append((None, None, text))
        return out
    if "code" in value or "system" in value and "value" not in value:
        return [(value.get("system"), value.get("code"), value.get("display"))]
    if "value" in value:
        # Identifier (system|value) or ContactPoint (value; its system is phone/email, not a URI).
        is_contact = value.get("system") in ("phone", "fax", "email", "pager", "url", "sms", "other")
        system = None if is_contact else value.get("system")
        label = (value.get("type") or {}).get("text") if isinstance(value.get("type"), dict) else None
        return [(system, _str(value.get("value")), label)]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        out: list[str] = []
        for key in (
            "text",
            "family",
            "given",
            "prefix",
            "suffix",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "value",
            "display",
        ):
            item = value.get(key)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list):
                out.extend(i for i in item if isinstance(i, str))
        return out
    text = _str(value)
    return [text] if text else []


def _dates(value: Any, instant: bool) -> list[tuple[datetime, datetime]]:
    """A Period runs from its start's first instant to its end's last, open on a missing side
    (R4: an ongoing period has no end). `instant`: the value is an instant, a point."""
    if isinstance(value, dict):
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        if start or end:
            return [(start[0] if start else MIN_DATE, end[1] if end else MAX_DATE)]
        return []
    text = _str(value)
    parsed = date_range(text, instant=instant) if text else None
    return [parsed] if parsed else []


def _reference(value: Any, base_url: str) -> dict[str, Any] | None:
    if isinstance(value, str):  # canonical or uri
        return {
            "target_type": None,
            "target_id": None,
            "url": value,
            "ident_system": None,
            "ident_value": None,
        }
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    row: dict[str, Any] = {
        "target_type": None,
        "target_id": None,
        "url": None,
        "ident_system": None,
        "ident_value": None,
    }
    identifier = value.get("identifier")
    if isinstance(identifier, dict):
        row["ident_system"] = identifier.get("system")
        row["ident_value"] = _str(identifier.get("value"))
    if isinstance(ref, str):
        local = ref[len(base_url) + 1 :] if base_url and ref.startswith(base_url + "/") else ref
        parts = local.split("/")
        if len(parts) == 2 and parts[0][:1].isupper() and "://" not in local:
            row["target_type"], row["target_id"] = parts
        elif len(parts) == 4 and parts[2] == "_history" and "://" not in local:
            # The version is kept (as the local versioned reference) for a search on it.
            row["target_type"], row["target_id"] = parts[0], parts[1]
            row["url"] = local
        else:
            row["url"] = ref
    if row["target_id"] is None and row["url"] is None and row["ident_value"] is None:
        return None
    return row


def _quantity(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        rng = number_range(str(value))
        return [{"value": rng[0], "low": rng[1], "high": rng[2], "system": None, "code": None}] if rng else []
    if isinstance(value, dict) and "value" in value:
        rng = number_range(str(value["value"]))
        if rng:
            return [
                {
                    "value": rng[0],
                    "low": rng[1],
                    "high": rng[2],
                    "system": value.get("system"),
                    "code": value.get("code") or value.get("unit"),
                }
            ]
    if isinstance(value, dict) and ("low" in value or "high" in value):  # Range
        low = (value.get("low") or {}).get("value")
        high = (value.get("high") or {}).get("value")
        lo = float(low) if low is not None else -1e308
        hi = float(high) if high is not None else 1e308
        return [{"value": lo if low is not None else hi, "low": lo, "high": hi, "system": None, "code": None}]
    return []


def rows_for(param: SearchParamDef, values: list[Any], base_url: str) -> Rows:
    rows: Rows = defaultdict(list)
    kind = param.type
    for value in values:
        if kind == "string":
            for text in _strings(value):
                rows["idx_string"].append({"value_norm": fold(text), "value_exact": text})
        elif kind == "token":
            for system, code, text in _tokens(value):
                rows["idx_token"].append(
                    {
                        "system": system,
                        "code": code,
                        "text_norm": fold(text) if text else None,
                    }
                )
            if isinstance(value, dict) and isinstance(value.get("type"), dict) and "value" in value:
                for coding in value["type"].get("coding") or []:
                    rows["idx_token"].append(
                        {
                            "system": coding.get("system"),
                            "code": f"{coding.get('code')}|{value.get('value')}",
                            "text_norm": None,
                            "_param": f"{param.code}:of-type",
                        }
                    )
        elif kind == "reference":
            row = _reference(value, base_url)
            if row:
                rows["idx_reference"].append(row)
        elif kind == "date":
            for low, high in _dates(value, is_instant(param.expression)):
                rows["idx_date"].append({"low": low, "high": high})
        elif kind in ("number", "quantity"):
            rows["idx_number"].extend(_quantity(value))
        elif kind == "uri":
            text = _str(value)
            if text:
                rows["idx_uri"].append({"value": text})
    return rows


def sort_row(param: SearchParamDef, rows: Rows) -> dict[str, Any] | None:
    """The value a resource sorts by for this parameter: its smallest indexed value."""
    if param.type == "string" and rows.get("idx_string"):
        return {
            "value_text": min(r["value_norm"] for r in rows["idx_string"]),
            "value_num": None,
            "value_date": None,
        }
    if param.type == "token" and rows.get("idx_token"):
        # By code when there is one: a concept's text is not what it sorts by.
        codes = [r["code"] for r in rows["idx_token"] if r["code"]]
        codes = codes or [r["text_norm"] or "" for r in rows["idx_token"]]
        return {"value_text": min(codes), "value_num": None, "value_date": None}
    if param.type == "date" and rows.get("idx_date"):
        return {"value_text": None, "value_num": None, "value_date": min(r["low"] for r in rows["idx_date"])}
    if param.type in ("number", "quantity") and rows.get("idx_number"):
        return {
            "value_text": None,
            "value_num": min(r["value"] for r in rows["idx_number"]),
            "value_date": None,
        }
    if param.type == "reference" and rows.get("idx_reference"):
        keys = [
            f"{r['target_type']}/{r['target_id']}" if r["target_id"] else (r["url"] or "")
            for r in rows["idx_reference"]
        ]
        return {"value_text": min(keys), "value_num": None, "value_date": None}
    if param.type == "uri" and rows.get("idx_uri"):
        return {"value_text": min(r["value"] for r in rows["idx_uri"]), "value_num": None, "value_date": None}
    return None


# Parameters a search sorts by the resource row's own columns (paging.sort_columns): a sort row
# for them would never be read, and they are two of every resource's ~17 sort rows.
SORTED_BY_COLUMN = frozenset({"_id", "_lastUpdated"})
# Parameter types whose sort key a search computes from the parameter's own index rows, the way
# sort_row would (paging.py): no sort row is written for them. They were 13 of a resource's ~15
# sort rows, which no page of the project sorts by, and written by every load: a tenth of its
# CPU. Text, dates and numbers keep theirs: the directory's pages sort by name through them.
SORTED_FROM_VALUES = frozenset({"token", "reference", "uri"})


def extract(registry: SearchParamRegistry, res: dict[str, Any], base_url: str = "", *, cut: bool = True) -> Rows:
    """All index rows of a resource, keyed by table, each row carrying its `param`.
    `cut=False`: text is left whole, for a caller that cuts it to its column (fit.LIMITS) itself."""
    res_type = res.get("resourceType", "")
    out: Rows = defaultdict(list)
    for param in registry.for_type(res_type):
        if not param.expression:
            continue
        try:
            values = param.evaluate(res)
        except Exception:  # noqa: BLE001 - a parameter that cannot evaluate on this resource indexes nothing
            continue
        if not values:
            continue
        rows = rows_for(
            param,
            [v if isinstance(v, (dict, list, str, int, float, bool)) else str(v) for v in values],
            base_url,
        )
        for table, items in rows.items():
            for item in items:
                item["param"] = item.pop("_param", param.code)
                out[table].append(item)
        sort = (
            None if param.code in SORTED_BY_COLUMN or param.type in SORTED_FROM_VALUES else sort_row(param, rows)
        )
        if sort is not None:
            out["idx_sort"].append({"param": param.code, **sort})
    if cut:
        for table, rows in out.items():
            fit_rows(table, rows)
    if res_type == "Location":
        position = res.get("position") or {}
        lat, lon = position.get("latitude"), position.get("longitude")
        if isinstance(lat, (int, float)) and isinstance(lon, (int, float)):
            out["idx_geo"].append({"param": "near", "latitude": float(lat), "longitude": float(lon)})
    return out
