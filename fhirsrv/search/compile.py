"""Compile parsed criteria into SQL conditions on a resource row id.

Every criterion becomes `rid IN (indexed subquery)`: AND across criteria intersects, OR within
one (comma values) unites. Chains and `_has` are joins on the reference index; `:below`,
`:above` and `:in` on tokens go through the terminology closure table and expansions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, and_, or_, select, text, tuple_
from sqlalchemy.sql.elements import ColumnClause

from fhirsrv.errors import BadRequest, TooCostly
from fhirsrv.search import clauses, near
from fhirsrv.search.filter import Compare, Logical
from fhirsrv.search.fit import fit
from fhirsrv.search.parameters import Criterion, parse, split_token
from fhirsrv.search.registry import SearchParamDef, SearchParamRegistry
from fhirsrv.search.scope import ReadScope
from fhirsrv.storage.schema import (
    code_closure,
    idx_date,
    idx_number,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    live,
    resource,
)

_TABLES = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_number,
    "uri": idx_uri,
}
_MODIFIERS = {
    "string": {"exact", "contains", "missing", "@eq", "@ew"},  # @: _filter's own eq / ew
    "token": {"text", "not", "missing", "below", "above", "in", "not-in", "of-type"},
    "reference": {"identifier", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "special": {"missing"},
}


class CodeExpander(Protocol):
    """What the search engine needs from terminology for :in / :not-in (a ValueSet's codes)."""

    def valueset_codes(self, conn: Connection, url: str) -> list[tuple[str, str]]: ...


class Compiler:
    def __init__(
        self,
        registry: SearchParamRegistry,
        conn: Connection,
        scope: ReadScope,
        bases: tuple[str, ...] = (),
        expander: CodeExpander | None = None,
        ordered: bool = False,
        *,
        max_chain_depth: int,
    ) -> None:
        self.registry = registry
        # References one criterion may follow (chains, _has and _filter paths together), and
        # how many the one being compiled follows now: each adds a nested subquery.
        self.max_chain_depth = max_chain_depth
        self._hops = 0
        self.conn = conn
        # What chains and _has may look through: a hidden entry's fields must not decide
        # whether a visible one matches (that would let anyone read them, one guess at a time).
        self.scope = scope
        # This server's base URLs (configured, and as the client called it): see reference_test.
        self.bases = bases
        self.expander = expander
        self.ordered_prefix = ordered

    # ------------------------------------------------------------------------------ entry points
    def condition(self, res_type: str, crit: Criterion, rid: ColumnClause | Any) -> ColumnElement[bool]:
        if crit.name == "_has":
            return self._has(res_type, crit, rid)
        if crit.tree is not None:
            return self._filter(res_type, crit.tree, rid)
        param = self.param(res_type, crit.name)
        if param.via:
            return self._via(res_type, param, crit, rid)
        if crit.chain:
            return self._chain(res_type, param, crit, rid)
        if param.type == "special" or param.code == "near":
            return self._near(res_type, crit, rid)
        modifier = crit.modifier
        typed_reference = param.type == "reference" and bool(modifier) and modifier[:1].isupper()
        if modifier and not typed_reference and modifier not in _MODIFIERS.get(param.type, set()):
            raise BadRequest(
                f"Modifier :{modifier} is not supported on {param.type} parameter '{param.code}'"
            )
        if typed_reference and param.target and modifier not in param.target:
            # A type the parameter cannot point to matched nothing, without a word.
            raise BadRequest(f"'{param.code}' points to {', '.join(param.target)}, not :{modifier}")
        table = _TABLES[param.type]
        if modifier == "missing":
            missing = crit.values[0].lower()
            if missing not in ("true", "false"):
                raise BadRequest(f"{crit.raw_name} takes true or false, not '{crit.values[0]}'")
            present = select(table.c.rid).where(table.c.res_type == res_type, table.c.param == param.code)
            return rid.in_(present) if missing == "false" else ~rid.in_(present)
        if modifier in ("not", "not-in"):
            positive = Criterion(
                crit.raw_name, crit.name, None if modifier == "not" else "in", None, crit.values
            )
            return ~self.condition(res_type, positive, rid)
        if modifier == "identifier":
            # Reference.identifier, or the identifier of the resource referred to (ROR: by establishment).
            own = select(table.c.rid).where(
                table.c.res_type == res_type,
                table.c.param == param.code,
                or_(*[self._value_test(param, modifier, v) for v in crit.values]),
            )
            through = Criterion(crit.raw_name, crit.name, None, "identifier", crit.values)
            return or_(rid.in_(own), self._chain(res_type, param, through, rid))
        param_code = f"{param.code}:of-type" if modifier == "of-type" else param.code
        tests = [self._value_test(param, modifier, value) for value in crit.values if value != ""]
        if not tests:
            raise BadRequest(f"Parameter '{crit.raw_name}' has no value")
        sub = select(table.c.rid).where(
            table.c.res_type == res_type, table.c.param == param_code, or_(*tests)
        )
        return rid.in_(sub)

    def param(self, res_type: str, code: str) -> SearchParamDef:
        param = self.registry.get(res_type, code)
        if param is None:
            raise BadRequest(f"Unknown search parameter '{code}' for {res_type}")
        return param

    # ---------------------------------------------------------------------------------- values
    def _value_test(self, param: SearchParamDef, modifier: str | None, value: str) -> ColumnElement[bool]:
        kind = param.type
        if kind == "string":
            return clauses.string_test(value, modifier, self.ordered_prefix)
        if kind == "token":
            if modifier in ("below", "above"):
                return self._subsumption(value, modifier)
            if modifier == "in":
                return self._in_valueset(value)
            if modifier == "of-type":
                parts = value.split("|")
                if len(parts) != 3:
                    raise BadRequest(f":of-type takes system|code|value, not '{value}'")
                return and_(
                    idx_token.c.system == fit(idx_token.c.system, parts[0]),
                    idx_token.c.code == fit(idx_token.c.code, f"{parts[1]}|{parts[2]}"),
                )
            return clauses.token_test(value, modifier)
        if kind == "reference":
            return clauses.reference_test(value, modifier, param.target, self.bases)
        if kind == "date":
            return clauses.date_test(value)
        if kind in ("number", "quantity"):
            return clauses.number_test(value, quantity=kind == "quantity")
        if kind == "uri":
            return clauses.uri_test(value, modifier)
        raise BadRequest(f"Parameter '{param.code}' of type {kind} is not searchable here")

    def _subsumption(self, value: str, modifier: str) -> ColumnElement[bool]:
        system, code = split_token(value)
        if not system or not code:
            raise BadRequest(f":{modifier} needs system|code, not '{value}'")
        known = self.conn.execute(
            select(code_closure.c.system).where(code_closure.c.system == system).limit(1)
        ).first()
        if known is None:
            raise BadRequest(f"The code system '{system}' is not known to this server's terminology service")
        if modifier == "below":
            related = select(code_closure.c.descendant).where(
                code_closure.c.system == system, code_closure.c.ancestor == code
            )
        else:
            related = select(code_closure.c.ancestor).where(
                code_closure.c.system == system, code_closure.c.descendant == code
            )
        # A hierarchy's branch is small: resolving it first gives the planner a literal list the
        # token index serves directly, whatever its statistics say (fresh bulk loads have none).
        codes = [c for (c,) in self.conn.execute(related)]
        if not codes:
            return clauses.NOTHING
        return and_(idx_token.c.system == system, idx_token.c.code.in_(codes))

    def _in_valueset(self, url: str) -> ColumnElement[bool]:
        if self.expander is None:
            raise BadRequest(
                "The :in and :not-in modifiers need the terminology service, which is not installed"
            )
        pairs = self.expander.valueset_codes(self.conn, url)
        if not pairs:
            return clauses.NOTHING
        return tuple_(idx_token.c.system, idx_token.c.code).in_(pairs)

    # --------------------------------------------------------------------------------- _filter
    def _filter(self, res_type: str, node: Any, rid: Any) -> ColumnElement[bool]:
        if isinstance(node, Logical):
            parts = [self._filter(res_type, item, rid) for item in node.items]
            if node.op == "not":
                return ~parts[0]
            return and_(*parts) if node.op == "and" else or_(*parts)
        return self._compare(res_type, node, rid)

    def _element_param(self, res_type: str, name: str) -> str:
        """A parameter name, or an element name mapped to the parameter indexing it."""
        if self.registry.get(res_type, name) is not None:
            return name
        for param in self.registry.for_type(res_type):
            if param.expression.split("|")[0].strip() == f"{res_type}.{name}":
                return param.code
        raise BadRequest(f"_filter: '{name}' is not a search parameter of {res_type}")

    def _compare(self, res_type: str, node: Compare, rid: Any) -> ColumnElement[bool]:
        name = self._element_param(res_type, node.path[0])
        if len(node.path) > 1:
            param = self.param(res_type, name)
            inner = Compare(node.path[1:], node.op, node.value)
            options = []
            for target in self._targets(param, None):
                try:
                    self._element_param(target, inner.path[0])
                except BadRequest:
                    continue
                with self._following(f"_filter path '{'.'.join(node.path)[:200]}'"):
                    joined = self._referring(
                        res_type,
                        name,
                        target,
                        lambda t_rid, target=target: self._compare(target, inner, t_rid),
                    )
                options.append(rid.in_(joined))
            if not options:
                raise BadRequest(f"_filter: cannot follow '{'.'.join(node.path)}' from {res_type}")
            return or_(*options)
        param = self.param(res_type, name)
        op, value = node.op, node.value
        if op == "pr":
            return self.condition(
                res_type,
                Criterion(name, name, "missing", None, ["false" if value.lower() == "true" else "true"]),
                rid,
            )
        if op == "ne" and param.type in ("string", "token", "reference", "uri"):
            return ~self._compare(res_type, Compare(node.path, "eq", value), rid)
        if param.type == "string":
            modifier = {"eq": "@eq", "co": "contains", "sw": None, "ew": "@ew"}.get(op)
            if op not in ("eq", "co", "sw", "ew"):
                raise BadRequest(f"_filter: '{op}' does not apply to string parameter '{name}'")
            return self.condition(res_type, Criterion(name, name, modifier, None, [value]), rid)
        if param.type in ("date", "number", "quantity"):
            prefix = {"co": "eq", "sw": "eq", "ew": "eq"}.get(op, op)
            return self.condition(res_type, Criterion(name, name, None, None, [prefix + value]), rid)
        if op != "eq":
            raise BadRequest(f"_filter: '{op}' does not apply to {param.type} parameter '{name}'")
        return self.condition(res_type, Criterion(name, name, None, None, [value]), rid)

    # ---------------------------------------------------------------------- chains and _has
    def _targets(self, param: SearchParamDef, modifier: str | None) -> list[str]:
        if modifier and modifier[:1].isupper():
            return [modifier]
        known = self.registry.known_types
        targets = [t for t in param.target if t in known] if param.target else sorted(known)
        if not targets:
            raise BadRequest(f"'{param.code}' refers to no resource type this server holds")
        return targets

    @contextmanager
    def _following(self, what: str) -> Iterator[None]:
        """One more reference followed while compiling inside this block, within the limit.

        Checked on the way down, before the next level is even parsed: `_has` 200 levels deep
        or a chain of 40 links used to end in SQLite's parser overflowing (500)."""
        self._hops += 1
        try:
            if self._hops > self.max_chain_depth:
                raise TooCostly(
                    f"{what} follows more than {self.max_chain_depth} references in one criterion "
                    "(chains, _has and _filter paths count together); this server's limit is "
                    "max_chain_depth (FHIRSRV_MAX_CHAIN_DEPTH)"
                )
            yield
        finally:
            self._hops -= 1

    def _chain(self, res_type: str, param: SearchParamDef, crit: Criterion, rid: Any) -> ColumnElement[bool]:
        if param.type != "reference":
            raise BadRequest(f"'{crit.name}' is not a reference parameter and cannot be chained")
        with self._following(f"'{crit.raw_name}'"):
            return self._chain_targets(res_type, param, crit, rid)

    def _chain_targets(
        self, res_type: str, param: SearchParamDef, crit: Criterion, rid: Any
    ) -> ColumnElement[bool]:
        inner_name, _, _rest = crit.chain.partition("=") if crit.chain else ("", "", "")
        options = []
        for target in self._targets(param, crit.modifier):
            inner = parse(inner_name, ",".join(v.replace(",", "\\,") for v in crit.values))
            if self.registry.get(target, inner.name) is None and inner.name != "_has":
                continue
            joined = self._referring(
                res_type,
                param.code,
                target,
                lambda t_rid, target=target, inner=inner: self.condition(target, inner, t_rid),
            )
            options.append(rid.in_(joined))
        if not options:
            raise BadRequest(f"Unknown chained parameter '{crit.raw_name}' for {res_type}")
        return or_(*options)

    def _via(self, res_type: str, param: SearchParamDef, crit: Criterion, rid: Any) -> ColumnElement[bool]:
        """A parameter defined as a chain (registry.SearchParamDef.via), such as `departement` on
        HealthcareService for `location.departement`: compiled as that chain, so it reads each
        Location as it is now. Negation and :missing hold for the resource, not for each link:
        an offer is `departement:not=35` when none of its places is in 35."""
        if crit.chain:
            raise BadRequest(f"'{crit.name}' is not a reference parameter and cannot be chained")
        modifier = crit.modifier
        if modifier and modifier not in _MODIFIERS.get(param.type, set()):
            raise BadRequest(
                f"Modifier :{modifier} is not supported on {param.type} parameter '{param.code}'"
            )
        if modifier in ("not", "not-in"):
            positive = Criterion(
                crit.raw_name, crit.name, None if modifier == "not" else "in", None, crit.values
            )
            return ~self._via(res_type, param, positive, rid)
        reference, _, inner = (param.via or "").partition(".")
        if modifier == "missing":
            missing = crit.values[0].lower() if crit.values else ""
            if missing not in ("true", "false"):
                raise BadRequest(f"{crit.raw_name} takes true or false, not '{','.join(crit.values)}'")
            through = Criterion(crit.raw_name, reference, None, f"{inner}:missing", ["false"])
            present = self.condition(res_type, through, rid)
            return present if missing == "false" else ~present
        inner_name = f"{inner}:{modifier}" if modifier else inner
        return self.condition(
            res_type, Criterion(crit.raw_name, reference, None, inner_name, crit.values), rid
        )

    def _has(self, res_type: str, crit: Criterion, rid: Any) -> ColumnElement[bool]:
        # _has:Type:refparam:param[:modifier]=value (the raw name keeps every colon).
        parts = crit.raw_name.split(":", 3)
        if len(parts) < 4:
            raise BadRequest(f"'{crit.raw_name}' must read _has:Type:reference-parameter:parameter")
        _, other, ref_code, rest = parts
        if other not in self.registry.known_types:
            raise BadRequest(f"_has names an unknown resource type '{other}'")
        ref = self.param(other, ref_code)
        if ref.type != "reference":
            raise BadRequest(f"_has: '{ref_code}' is not a reference parameter of {other}")
        inner = parse(rest, ",".join(v.replace(",", "\\,") for v in crit.values))
        with self._following(f"'{crit.raw_name[:200]}'"):
            inner_test = self.condition(other, inner, idx_reference.c.rid)
        # Drive from the referring resources that match, to the ids they point to: an IN list
        # on the (target_type, target_id) index rather than one probe per candidate.
        targets = select(idx_reference.c.target_id).where(
            idx_reference.c.res_type == other,
            idx_reference.c.param == ref_code,
            idx_reference.c.target_type == res_type,
            inner_test,
        )
        hidden_others = self.scope.searchable(other, idx_reference.c.rid)
        if hidden_others is not None:
            targets = targets.where(hidden_others)
        me = resource.alias()
        pointing = select(me.c.rid).where(me.c.res_type == res_type, me.c.res_id.in_(targets))
        return rid.in_(pointing)

    def _referring(self, res_type: str, param_code: str, target: str, target_test: Any) -> Any:
        def visible_test(t_rid: Any) -> Any:
            visible = self.scope.searchable(target, t_rid)
            test = target_test(t_rid)
            return test if visible is None else and_(test, visible)

        return referring(res_type, param_code, target, visible_test)

    # ------------------------------------------------------------------------------------ near
    def _near(self, res_type: str, crit: Criterion, rid: Any) -> ColumnElement[bool]:
        if res_type != "Location":
            raise BadRequest("near is a Location parameter (chain it: location.near=…)")
        return or_(*[near.within(value, rid) for value in crit.values])


def ordered_prefix(conn: Connection) -> bool:
    """Whether text compares by code point on this database, so that a starts-with search may
    add the range `value >= p AND value < p || U+10FFFF`, which a B-tree index serves (SQLite
    and PostgreSQL do not use an index for LIKE 'p%' under their default settings).
    SQLite compares bytes; PostgreSQL does when the database collation is C or C.UTF-8.
    Asked once per server, by the SearchEngine when it starts."""
    if conn.dialect.name == "sqlite":
        return True
    if conn.dialect.name == "postgresql":
        collation = conn.execute(
            text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        ).scalar()
        return str(collation).upper() in ("C", "POSIX", "C.UTF-8", "C.UTF8")
    return False


def referring(res_type: str, param_code: str, target: str, target_test: Any) -> Any:
    """The rids of `res_type` resources whose reference parameter points to a live `target`
    resource passing `target_test(rid column)`.

    The matching targets are found first and their ids fed to the reference index as an IN
    list: joining the other way round lets SQLite probe the whole target list once per
    reference row (a chain over 10k resources went from about a second to milliseconds).
    """
    t = resource.alias()
    target_ids = select(t.c.res_id).where(t.c.res_type == target, live(t), target_test(t.c.rid))
    return select(idx_reference.c.rid).where(
        idx_reference.c.res_type == res_type,
        idx_reference.c.param == param_code,
        idx_reference.c.target_type == target,
        idx_reference.c.target_id.in_(target_ids),
    )
