"""`near` on Location: a bounding-box prefilter the idx_geo index can serve, then the exact
great-circle distance; and the distance as a sort key (`_sort=near`), also through a chain
such as `HealthcareService?location.near=…&_sort=near` (the offers nearest a patient first),
and as each match's distance in the search result."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, select

from fhirsrv.errors import BadRequest
from fhirsrv.search.parameters import Criterion
from fhirsrv.search.scope import ReadScope
from fhirsrv.storage.schema import idx_geo, idx_reference, live, resource

EARTH_KM = 6371.0088  # the mean Earth radius (IUGG): the distance and the box both use it
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


def bounding_box(lat: float, lon: float, dist: float) -> tuple[float, tuple[float, float] | None]:
    """The smallest latitude/longitude box holding every point within `dist` km of (lat, lon)
    on the sphere of distance_km: its half-height in degrees, and its (west, east) longitudes,
    None when the circle reaches a pole or the antimeridian (no longitude bound then).

    The box must contain the whole circle: one made with another radius, or with the circle's
    width at the centre's latitude (it is wider nearer the pole), left out places that
    distance_km puts inside the distance."""
    angle = dist / EARTH_KM  # radians along the great circle
    d_lat = math.degrees(angle)
    ratio = math.sin(min(angle, math.pi / 2)) / max(math.cos(math.radians(lat)), 1e-12)
    if abs(lat) + d_lat >= 90 or ratio >= 1:
        return d_lat, None
    d_lon = math.degrees(math.asin(ratio))
    if abs(lon) + d_lon > 180:
        return d_lat, None
    return d_lat, (lon - d_lon, lon + d_lon)


def within(value: str, rid: Any) -> ColumnElement[bool]:
    """`rid IN` the Locations within the distance of one near value: a box the idx_geo index
    serves, then the exact distance."""
    lat, lon, dist, _ = parse_near(value)
    d_lat, longitudes = bounding_box(lat, lon, dist)
    g = idx_geo.c
    box = [g.latitude.between(lat - d_lat, lat + d_lat)]
    if longitudes is not None:
        box.append(g.longitude.between(*longitudes))
    sub = select(g.rid).where(g.res_type == "Location", *box, distance_km(lat, lon) <= dist)
    return rid.in_(sub)


def near_criterion(criteria: list[Criterion], res_types: list[str]) -> Criterion | None:
    """The query's near criterion: `near=…` on Location, or a chain ending in it (`location.near=…`)."""
    for crit in criteria:
        if crit.name == "near" and crit.chain is None and res_types == ["Location"]:
            return crit
        if crit.chain == "near" and crit.name != "_has":
            return crit
    return None


def _nearest_point(crit: Criterion) -> ColumnElement[float]:
    """The distance from idx_geo's point to the nearest of the criterion's points (its values are
    OR-ed: a place is as far as the nearest point asked about)."""
    points = [parse_near(value)[:2] for value in crit.values]
    nearest = distance_km(*points[0])
    for lat, lon in points[1:]:
        nearest = func.least(nearest, distance_km(lat, lon))
    return nearest


def _distance_of(crit: Criterion, scope: ReadScope) -> ColumnElement[float]:
    """The distance of each row (resource.c.rid) to the criterion's point, FAR without a position.

    Location: its own position. Another type: the nearest Location its chained reference
    parameter points to, among those the caller may see (a hidden place must not pull an offer
    up the list, nor be found by moving the point)."""
    if crit.chain is None:
        return func.coalesce(
            select(func.min(_nearest_point(crit))).where(idx_geo.c.rid == resource.c.rid).scalar_subquery(),
            FAR,
        )
    target = resource.alias()
    nearest = (
        select(func.min(_nearest_point(crit)))
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


def sort_distance(criteria: list[Criterion], res_types: list[str], scope: ReadScope) -> ColumnElement[float]:
    """The distance of each row to the point of the query's near criterion, for `_sort=near`
    (see _distance_of). Without such a criterion, sorting by near is an error."""
    crit = near_criterion(criteria, res_types)
    if crit is None:
        raise BadRequest(
            "_sort=near needs a near criterion (near=… on Location, or a chain such as location.near=…)"
        )
    return _distance_of(crit, scope)


def distances(
    conn: Connection, criteria: list[Criterion], res_types: list[str], scope: ReadScope, rids: list[int]
) -> dict[int, float]:
    """How far each of a page's matches is from the near point, in km (none without a near
    criterion, or for a match without a position): the search result shows it to the client."""
    crit = near_criterion(criteria, res_types)
    if crit is None or not rids:
        return {}
    query = select(resource.c.rid, _distance_of(crit, scope)).where(resource.c.rid.in_(rids))
    return {rid: float(km) for rid, km in conn.execute(query) if km is not None and km < FAR}
