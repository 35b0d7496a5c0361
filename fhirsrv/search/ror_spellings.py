"""The ROR's spellings of a search near a place, rewritten to standard R4 before anything else
reads the query, so that matching, `_sort=near` and each match's distance work the same for both:

- `location:near=lat|lon|d|unit` (the ROR's published "near a patient" query) is the chain
  `location.near=…`: `near` is no modifier in R4, so the spelling is unambiguous;
- `near-insee-code=INSEE|d|unit` on Location (ROR SearchParameter ror-sp-location-near-insee-code),
  also chained (`location.near-insee-code=…`), is `near=lat|lon|d|unit` from that commune's town
  hall. The ROR measures from commune to commune; here the distance is to the Location's own
  position, as for `near` (a deviation: more exact for the patient, and a Location without a
  position is not found, as with `near`).
"""

from __future__ import annotations

from fhirsrv.errors import BadRequest
from fhirsrv.search.communes import CommunePositions
from fhirsrv.search.near import parse_near
from fhirsrv.search.parameters import Criterion

NEAR_INSEE = "near-insee-code"
_NEAR_MODIFIERS = ("near", NEAR_INSEE)


def standard(crit: Criterion, communes: CommunePositions) -> Criterion:
    """The criterion in R4's own terms (itself when it is already)."""
    if crit.modifier in _NEAR_MODIFIERS and crit.chain is None:
        crit = Criterion(crit.raw_name, crit.name, None, crit.modifier, crit.values, crit.tree)
    if crit.chain == NEAR_INSEE:
        return Criterion(crit.raw_name, crit.name, crit.modifier, "near", _points(crit.values, communes))
    if crit.name == NEAR_INSEE and crit.chain is None:
        return Criterion(crit.raw_name, "near", crit.modifier, None, _points(crit.values, communes))
    return crit


def _points(values: list[str], communes: CommunePositions) -> list[str]:
    return [_point(value, communes) for value in values]


def _point(value: str, communes: CommunePositions) -> str:
    """'INSEE|distance|unit' -> 'lat|lon|distance|unit'."""
    code, _, rest = value.partition("|")
    if not code:
        raise BadRequest(f"{NEAR_INSEE} takes INSEE code|distance|unit (e.g. 29019|15|km), not '{value}'")
    position = communes.position(code)
    if position is None:
        raise BadRequest(f"{NEAR_INSEE}: no commune with INSEE code '{code}' is known to this server")
    point = f"{position[0]}|{position[1]}" + (f"|{rest}" if rest else "")
    try:
        parse_near(point)
    except BadRequest as exc:
        raise BadRequest(
            f"{NEAR_INSEE} takes INSEE code|distance|unit (e.g. 29019|15|km), not '{value}'"
        ) from exc
    return point
