"""`near` on Location: a bounding-box prefilter the idx_geo index can serve, then the exact
great-circle distance; and the distance as a sort key (`_sort=near`), also through a chain
such as `HealthcareService?location.near=…&_sort=near` (the offers nearest a patient first)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select

from fhirsrv.errors import BadRequest
from fhirsrv.search.parameters import Criterion
from fhirsrv.search.scope import ReadScope
from fhirsrv.storage.schema import idx_geo, idx_reference, live, resource

EARTH_KM = 6371.0088
_UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344, "mi_i": 1.609344}
FAR = 1e9  # the distance given to a resource without a position: it sorts last


def parse_near(value: str) -> tuple[float, float, float, str]:
    """'lat|lon|distance|unit' -> (lat, lon, distance in km, unit); the distance defaults to 10 km."""
    parts = value.split("|")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        dist = float(parts[2]) if len(parts) > 2 and parts[2] else 10.0
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"near takes latitude|longitude|distance|unit, not '{value}'") from exc
    unit = parts[3] if len(parts) > 3 and parts[3] else "km"
    if unit not in _UNITS:
        raise BadRequest(f"near: unsupported distance unit '{unit}' (km, m, mi)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or dist < 0:
        raise BadRequest(f"near: '{value}' is not a valid position and distance")
    return lat, lon, dist * _UNITS[unit], unit


def distance_km(lat: float, lon: float) -> ColumnElement[float]:
    """Great-circle distance from (lat, lon) to idx_geo's point (spherical law of cosines)."""
    g = idx_geo.c
    rlat = math.radians(lat)
    cos_angle = math.sin(rlat) * func.sin(func.radians(g.latitude)) + math.cos(rlat) * func.cos(
        func.radians(g.latitude)
    ) * func.cos(func.radians(g.longitude) - math.radians(lon))
    return EARTH_KM * func.acos(func.least(1.0, func.greatest(-1.0, cos_angle)))


def within(value: str, rid: Any) -> ColumnElement[bool]:
    """`rid IN` the Locations within the distance of one near value."""
    lat, lon, dist, _ = parse_near(value)
    d_lat = dist / 111.32
    d_lon = dist / max(111.32 * math.cos(math.radians(lat)), 1e-6)
    g = idx_geo.c
    sub = select(g.rid).where(
        g.res_type == "Location",
        g.latitude.between(lat - d_lat, lat + d_lat),
        g.longitude.between(lon - d_lon, lon + d_lon),
        distance_km(lat, lon) <= dist,
    )
    return rid.in_(sub)


def sort_distance(criteria: list[Criterion], res_types: list[str], scope: ReadScope) -> ColumnElement[float]:
    """The distance of each row to the point of the query's near criterion, for `_sort=near`.

    Location: its own position. Another type: the nearest Location its chained reference
    parameter points to (`location.near=…`), among those the caller may see (a hidden place
    must not pull an offer up the list, nor be found by moving the point). Without such a
    criterion, sorting by near is an error.
    """
    for crit in criteria:
        if crit.name == "near" and crit.chain is None and res_types == ["Location"]:
            lat, lon, _, _ = parse_near(crit.values[0])
            return func.coalesce(
                select(func.min(distance_km(lat, lon)))
                .where(idx_geo.c.rid == resource.c.rid)
                .scalar_subquery(),
                FAR,
            )
        if crit.chain == "near" and crit.name != "_has":
            lat, lon, _, _ = parse_near(crit.values[0])
            target = resource.alias()
            nearest = (
                select(func.min(distance_km(lat, lon)))
                .select_from(idx_reference)
                .join(
                    target,
                    and_(
                        target.c.res_type == idx_reference.c.target_type,
                        target.c.res_id == idx_reference.c.target_id,
                    ),
                )
                .join(idx_geo, idx_geo.c.rid == target.c.rid)
                .where(
                    idx_reference.c.rid == resource.c.rid,
                    idx_reference.c.param == crit.name,
                    target.c.res_type == "Location",
                    live(target),
                    *[c for c in [scope.searchable("Location", target.c.rid)] if c is not None],
                )
                .scalar_subquery()
            )
            return func.coalesce(nearest, FAR)
    raise BadRequest(
        "_sort=near needs a near criterion (near=… on Location, or a chain such as location.near=…)"
    )
