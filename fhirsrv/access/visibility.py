"""Which entries a principal may see, as SQL on a row id (the ReadScope of search/scope.py).

The rule, per type (README, "Who sees what"):
- conformance and terminology content: everyone;
- AuditEvent: regional administrators only;
- Subscription (an owned type): the client that created it only, a regional administrator's
  own included (access/owners.py);
- the directory (Organization, HealthcareService, Location, PractitionerRole, Endpoint) and
  its people (Practitioner), from the `entry_access` visibility of each resource:
  - anonymous callers and structure referents search `public` entries; by id they also read
    `retired` (delisted, withdrawn) structures, offers and places, which care plans cite;
  - partner readers (coordination platforms) search and read `public` and `retired`;
  - territorial administrators: as partners, plus every entry of a structure located in
    their départements, whatever its status;
  - structure referents: plus every entry of their own structure;
  - regional administrators and the server: everything.
A directory resource without an `entry_access` row is hidden from all but the last: the
policy fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, func, not_, or_, select, true, union

from fhirsrv.access import owners
from fhirsrv.access.facts import AUDIT_TYPES, CITEABLE_TYPES, GOVERNED_TYPES, Visibility
from fhirsrv.access.principal import Principal, Role
from fhirsrv.resource_types import OWNED_TYPES
from fhirsrv.storage.schema import entry_access, idx_token, live, resource, structure_territory

ea = entry_access.c

_SEARCHED: dict[Role, tuple[Visibility, ...]] = {
    Role.ANONYMOUS: (Visibility.PUBLIC,),
    Role.STRUCTURE_REFERENT: (Visibility.PUBLIC,),
    Role.PARTNER_READER: (Visibility.PUBLIC, Visibility.RETIRED),
    Role.TERRITORIAL_ADMIN: (Visibility.PUBLIC, Visibility.RETIRED),
}


def sees_retired(principal: Principal) -> bool:
    """Whether the principal sees every kind of entry that left the directory (delisted,
    withdrawn), its people included: those who search them (partners, territorial
    administrators) and those who see everything. The public and structure referents read
    only the retired entries a care plan cites, by id, without the people."""
    if principal.sees_everything:
        return True
    return Visibility.RETIRED in _SEARCHED.get(principal.role, ())


def territory_structures(principal: Principal) -> Any:
    """The structures of a territorial admin's territory, as a SELECT of Organization ids:
    those whose address lies in its départements, and those with a live place (Location) in
    its communes (a DAC area may be smaller than a département). None when it has neither."""
    parts = []
    if principal.departements:
        parts.append(
            select(structure_territory.c.structure).where(
                structure_territory.c.departement.in_(principal.departements)
            )
        )
    if principal.communes:
        place = entry_access.alias("territory_place")
        place_live = resource.alias("territory_place_resource")
        parts.append(
            select(place.c.structure).where(
                place.c.res_type == "Location",
                place.c.commune.in_(principal.communes),
                place.c.rid.in_(select(place_live.c.rid).where(live(place_live))),
            )
        )
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else union(*parts)


def _is(table: Any, base: Any) -> bool:
    """`table` is `base` or an alias of it."""
    return table is base or getattr(table, "original", None) is base


class PrincipalScope:
    """The ReadScope of one principal."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def searchable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        return self._condition(res_type, rid, by_id=False)

    def readable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        return self._condition(res_type, rid, by_id=True)

    def by_status(self, res_type: str, rid: Any, *, by_id: bool) -> ColumnElement[bool] | None:
        """The part of the rule that comes from the entry's visibility alone (no perimeter)."""
        principal = self.principal
        if res_type in OWNED_TYPES:  # its owner's only, whoever else asks (access/owners.py)
            return owners.condition(principal, res_type, rid)
        if principal.sees_everything:
            return None
        if res_type in AUDIT_TYPES:
            return false()
        if res_type not in GOVERNED_TYPES:
            return None
        shown = _SEARCHED[principal.role]
        if by_id and res_type in CITEABLE_TYPES and Visibility.RETIRED not in shown:
            shown = (*shown, Visibility.RETIRED)
        public_only = shown == (Visibility.PUBLIC,)
        # The rows a search reads carry the visibility themselves (schema.py): a check there
        # costs nothing; spelt as the partial indexes' predicates, so the planner uses them.
        table = getattr(rid, "table", None)
        if table is not None and rid.key == "rid" and _is(table, resource):
            column = table.c.visibility
            return column == "public" if public_only else column != "hidden"
        if table is not None and rid.key == "rid" and _is(table, idx_token) and public_only:
            return table.c.public
        # Anything else (a reference's source, a chain's target): an index probe per row.
        seen = ea.visibility == "public" if public_only else ea.visibility != "hidden"
        return rid.in_(select(ea.rid).where(ea.res_type == res_type, seen))

    def readable_with(self, res_type: str, visibility: str) -> bool | None:
        """`readable` decided from an entry's current visibility alone (its `resource.visibility`
        column, as `by_status` reads it), or None when the database must decide: an owned type,
        or a principal with a perimeter (`perimeter`), which the visibility does not tell."""
        principal = self.principal
        if res_type in OWNED_TYPES:
            return None
        if principal.sees_everything or res_type not in GOVERNED_TYPES:
            return res_type not in AUDIT_TYPES or principal.sees_everything
        if self.has_perimeter():
            return None
        shown = _SEARCHED[principal.role]
        if res_type in CITEABLE_TYPES and Visibility.RETIRED not in shown:
            shown = (*shown, Visibility.RETIRED)
        return visibility in shown

    def has_perimeter(self) -> bool:
        """Whether the principal has a perimeter (`perimeter` is not None for governed types)."""
        principal = self.principal
        if principal.role is Role.STRUCTURE_REFERENT and principal.organization:
            return True
        return principal.role is Role.TERRITORIAL_ADMIN and territory_structures(principal) is not None

    def perimeter(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        """Entries the principal sees whatever their status (its structure, its territory);
        None when it has no such perimeter."""
        principal = self.principal
        if res_type not in GOVERNED_TYPES:
            return None
        if principal.role is Role.STRUCTURE_REFERENT and principal.organization:
            structures: Any = [principal.organization]
        elif principal.role is Role.TERRITORIAL_ADMIN and territory_structures(principal) is not None:
            structures = territory_structures(principal)
        else:
            return None
        if res_type == "Practitioner":
            role = entry_access.alias("perimeter_role")
            live_role = resource.alias("perimeter_live_role")
            people = select(role.c.person).where(
                role.c.res_type == "PractitionerRole",
                role.c.structure.in_(structures),
                role.c.rid.in_(select(live_role.c.rid).where(live(live_role))),
            )
            # An alias: the bare table would be correlated to the searching query's own rows.
            person = resource.alias("perimeter_person")
            return rid.in_(
                select(person.c.rid).where(person.c.res_type == "Practitioner", person.c.res_id.in_(people))
            )
        mine = entry_access.alias("perimeter_entry")
        return rid.in_(select(mine.c.rid).where(mine.c.res_type == res_type, mine.c.structure.in_(structures)))

    def changes(self, res_types: Sequence[str], log: Table) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        """Which rows of the change log (`log`: storage/changes.py) a type or system history of
        these types lists to this principal, and which of those it lists as a removal (an entry
        without its version) rather than as the version the row names.

        A history listing is a search over time. An entry is in the principal's view at a
        change when its visibility at that commit was one the principal searches, or when it
        lies in the principal's perimeter (its structure, its territory: judged as it is now).
        A change is listed when it writes a new version of an entry in view, when it brings an
        entry into view without a new version (a structure published: its offers did not
        change, their visibility did), or when it takes an entry out of view (delisted,
        withdrawn, its structure deleted): that one as a removal, so a client replaying the
        history drops what it had copied instead of keeping it for ever. A change of an entry
        that was never in view is not listed: no id is revealed that was never shown. The rows
        carry the visibility of their own commit, so a replay in row order ends on what the
        principal's search finds now."""
        c = log.c
        owned = [t for t in res_types if t in OWNED_TYPES]
        plain = [
            t
            for t in res_types
            if t not in GOVERNED_TYPES and t not in OWNED_TYPES and (t not in AUDIT_TYPES or self.principal.sees_everything)
        ]
        governed = [t for t in res_types if t in GOVERNED_TYPES]
        if self.principal.sees_everything:
            plain, governed = plain + governed, []
        shown: list[ColumnElement[bool]] = []
        removal: list[ColumnElement[bool]] = []
        if plain:
            shown.append(and_(c.res_type.in_(plain), c.new_version == true()))
        for res_type in owned:  # its owner's only, whoever else asks (access/owners.py)
            mine = owners.condition(self.principal, res_type, c.rid)
            versions = and_(c.res_type == res_type, c.new_version == true())
            shown.append(versions if mine is None else and_(versions, mine))
        if governed:
            allowed = [str(v) for v in _SEARCHED[self.principal.role]]
            now_in = c.visibility.in_(allowed)
            was_in = func.coalesce(c.previous_visibility, "hidden").in_(allowed)
            listed = or_(and_(now_in, or_(c.new_version == true(), not_(was_in))), and_(not_(now_in), was_in))
            by_status = []
            for res_type in governed:
                mine = self.perimeter(res_type, c.rid)
                if mine is None:
                    by_status.append(res_type)
                    continue
                shown.append(
                    and_(c.res_type == res_type, or_(and_(mine, c.new_version == true()), and_(not_(mine), listed)))
                )
                removal.append(and_(c.res_type == res_type, not_(mine), not_(now_in)))
            if by_status:
                shown.append(and_(c.res_type.in_(by_status), listed))
                removal.append(and_(c.res_type.in_(by_status), not_(now_in)))
        return (or_(*shown) if shown else false()), (or_(*removal) if removal else false())

    def _condition(self, res_type: str, rid: Any, *, by_id: bool) -> ColumnElement[bool] | None:
        status = self.by_status(res_type, rid, by_id=by_id)
        if status is None:
            return None
        extra = self.perimeter(res_type, rid)
        return status if extra is None else or_(status, extra)
