"""The search engine: indexing on write, and queries compiled to indexed SQL."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, delete, func, or_, select
from sqlalchemy.exc import DBAPIError

from fhirsrv.errors import BadRequest, Issue, TooCostly
from fhirsrv.jsonshape import NUL
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search import include, limits, near, paging, ror_spellings, rules, walk
from fhirsrv.search import total as totals
from fhirsrv.search.communes import CommunePositions
from fhirsrv.search.compile import CodeExpander, Compiler, ordered_prefix
from fhirsrv.search.extract import extract
from fhirsrv.search.fit import fit
from fhirsrv.search.parameters import CONTROL, Criterion, parse, split_token
from fhirsrv.search.registry import SearchParamRegistry, build_registry, stored_definitions, stored_generation
from fhirsrv.search.scope import ReadScope
from fhirsrv.settings import Settings
from fhirsrv.storage import bulk, repository
from fhirsrv.storage.engine import too_complex
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import INDEX_TABLES, idx_token, live, resource
from fhirsrv.text import small_natural

_TABLES = {t.name: t for t in INDEX_TABLES}


def loaded_columns(name: str) -> tuple[str, ...]:
    """The columns of a load's index rows, rid first: the indexer's, then a token row's first
    `public` flag (schema.py), which the load's access facts correct in its transaction."""
    table = _TABLES[name]
    columns = bulk.columns_of(table)
    return (*columns, "public") if "public" in table.c else columns


@dataclass
class SearchRequest:
    res_types: list[str]
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[paging.SortKey] = field(default_factory=list)
    count: int = 20
    cursor: str | None = None
    total: str = "accurate"
    includes: list[include.IncludeSpec] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    issues: list[Issue] = field(default_factory=list)  # ignored parameters (lenient handling)
    used: list[tuple[str, str]] = field(default_factory=list)  # the parameters applied, for links
    # The base URL the client called: an absolute reference on it is local, even when the
    # public base URL is not configured.
    base_url: str = ""


@dataclass
class SearchPage:
    matches: list[StoredResource]
    included: list[StoredResource]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None
    # km from the near point, per match rid (searches with a near criterion only).
    distances: dict[int, float] = field(default_factory=dict)


class SearchEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.types = SUPPORTED_TYPES
        # The registry with the stored SearchParameters' generation it was built at (None: the
        # shipped definitions only, never checked), swapped as one pair so that no thread ever
        # pairs a registry with another one's generation.
        self._loaded: tuple[tuple[Any, ...] | None, SearchParamRegistry] = (
            None,
            build_registry(settings, self.types),
        )
        self._reloading = threading.Lock()
        self.expander: CodeExpander | None = None
        self.base_url = settings.base_url.rstrip("/")
        self.communes = CommunePositions(settings.seed_dir / "data")  # for near-insee-code
        # Whether text compares by code point on this database (compile.ordered_prefix): read
        # with the stored parameters when the server starts.
        self.ordered_prefix = False
        # What decides the index rows written by this code (rules.py), before any stored
        # SearchParameter joins the registry: an upgrade compares it with the database's.
        self.rules = rules.fingerprint(self.registry)
        # The same without the types this version added: the rules of the version before.
        self.rules_before_added_types = rules.fingerprint(self.registry, without=rules.ADDED_TYPES)

    # ---------------------------------------------------------------------------- registry
    @property
    def registry(self) -> SearchParamRegistry:
        return self._loaded[1]

    def load_stored_parameters(self, conn: Connection) -> None:
        """Rebuild the registry from the shipped definitions plus the stored SearchParameters."""
        # Read first: a SearchParameter committed while the definitions are read then leaves the
        # registry at an older generation than the database's, and the next check reloads.
        generation = stored_generation(conn)
        self.ordered_prefix = ordered_prefix(conn)
        registry = build_registry(self.settings, self.types)
        for sp in stored_definitions(conn):
            registry.add_definition(sp, self.types)
        self._loaded = (generation, registry)

    def ensure_current(self, conn: Connection, generation: tuple[Any, ...] | None = None) -> None:
        """Reload the registry if a SearchParameter was written since it was built, by this
        process or any other (`stored_generation`): called before every search and every
        indexing, so with several worker processes a SearchParameter written through one is
        searched and indexed by all of them from the next request on. One small query when
        nothing changed; within a write transaction it sees that transaction's own writes.
        `generation`: the fingerprint, when the caller has just read it in `conn`."""
        now = stored_generation(conn) if generation is None else generation
        if now == self._loaded[0]:
            return
        with self._reloading:
            if now != self._loaded[0]:
                self.load_stored_parameters(conn)

    # ---------------------------------------------------------------------------- indexing
    def _insert(self, conn: Connection, rows_by_table: dict[str, list[dict[str, Any]]]) -> None:
        for name, rows in rows_by_table.items():
            table = _TABLES[name]
            columns = bulk.columns_of(table)
            bulk.insert_tuples(conn, table, [tuple(row.get(c) for c in columns) for row in rows], columns)

    def index(self, conn: Connection, stored: StoredResource, res: dict[str, Any]) -> None:
        if stored.version_id > 1:
            self.unindex(conn, stored.rid)
        self.index_many(conn, [(stored, res)], fresh=True)

    def index_many(
        self, conn: Connection, items: list[tuple[StoredResource, dict[str, Any]]], fresh: bool = True
    ) -> None:
        """Index many new resources with one multi-row INSERT per table."""
        self.ensure_current(conn)
        batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for stored, res in items:
            for table, rows in extract(self.registry, res, self.base_url).items():
                for row in rows:
                    row["rid"] = stored.rid
                    row["res_type"] = stored.res_type
                    batch[table].append(row)
        self._insert(conn, batch)

    def index_tuples(
        self, conn: Connection, rows_by_table: dict[str, list[tuple[Any, ...]]], *, public: bool
    ) -> None:
        """Insert index rows prepared elsewhere (the loader's workers): (rid, res_type, param, ...).
        `public`: the token rows' first `public` flag (schema.py), which the caller's access
        facts then correct in the same transaction."""
        for name, rows in rows_by_table.items():
            table = _TABLES[name]
            columns = loaded_columns(name)
            if "public" in table.c and rows:
                rows = [(*row, public) for row in rows]
            bulk.insert_tuples(conn, table, rows, columns)

    def index_copy(self, conn: Connection, lines_by_table: dict[str, list[bytes]]) -> None:
        """Insert index rows the loader's workers formatted as COPY text (PostgreSQL), each
        resource's lines with its rid (bulk.with_rid), in `loaded_columns` order."""
        for name, blocks in lines_by_table.items():
            bulk.copy_text(conn, _TABLES[name], loaded_columns(name), b"".join(blocks))

    def unindex(self, conn: Connection, rid: int) -> None:
        for table in INDEX_TABLES:
            conn.execute(delete(table).where(table.c.rid == rid))

    def reindex(self, conn: Connection, res_type: str | None = None) -> int:
        query = select(resource.c.rid).where(live(resource))
        if res_type is not None:
            query = query.where(resource.c.res_type == res_type)
        rids = [r for (r,) in conn.execute(query.order_by(resource.c.rid))]
        for start in range(0, len(rids), 500):
            chunk = rids[start : start + 500]
            for table in INDEX_TABLES:
                conn.execute(delete(table).where(table.c.rid.in_(chunk)))
            stored = repository.get_many(conn, chunk)
            self.index_many(conn, [(s, loads(s.content)) for s in stored])
        return len(rids)

    # ----------------------------------------------------------------------------- queries
    def prepare(
        self, res_type: str | None, params: list[tuple[str, str]], *, strict: bool, base_url: str = ""
    ) -> SearchRequest:
        settings = self.settings
        request = SearchRequest(
            res_types=[res_type] if res_type else [],
            count=settings.default_count,
            base_url=base_url.rstrip("/"),
        )
        controls: dict[str, list[str]] = defaultdict(list)
        include_values: dict[bool, list[tuple[str, bool]]] = {False: [], True: []}
        for name, value in params:
            if NUL in name or NUL in value:
                # PostgreSQL cannot compare text holding one: a 500 there, a silent miss on SQLite.
                raise BadRequest(
                    f"Search parameter '{name.replace(NUL, '?')}' holds a NUL character (U+0000)"
                )
            base = name.split(":", 1)[0]
            if base in ("_include", "_revinclude"):
                include_values[base == "_revinclude"].append((value, name.endswith(":iterate")))
                request.used.append((name, value))
            elif base in CONTROL:
                controls[base].append(value)
                if base not in ("_cursor", "_format", "_pretty"):
                    request.used.append((name, value))
            else:
                request.criteria.append(ror_spellings.standard(parse(name, value), self.communes))
                request.used.append((name, value))
        if res_type is None:
            types = [t for v in controls.get("_type", []) for t in v.split(",") if t]
            unknown = [t for t in types if t not in self.types]
            if unknown:
                raise BadRequest(f"_type names unknown resource types: {', '.join(unknown)}")
            request.res_types = types or list(self.types)
        if "_contained" in controls or "_containedType" in controls:
            raise BadRequest(
                "_contained is not supported: this server does not search contained resources",
                code="not-supported",
            )
        if "_filter" in controls:
            from fhirsrv.search.filter import filter_criteria

            request.criteria.extend(
                filter_criteria(v, settings.max_filter_depth) for v in controls["_filter"]
            )
        limits.check_criteria(request.criteria, settings)
        count = controls.get("_count", [None])[-1]
        if count is not None:
            number = small_natural(count)
            if number is None:
                raise BadRequest(f"_count must be a non-negative integer, not '{count[:40]}'")
            request.count = min(number, settings.max_count)
        total = controls.get("_total", [settings.default_total])[-1]
        if total not in totals.MODES:
            raise BadRequest(f"_total must be one of {', '.join(totals.MODES)}")
        request.total = total
        request.sort = paging.parse_sort(controls.get("_sort", []))
        limits.check_sort(len(request.sort), settings)
        request.cursor = controls.get("_cursor", [None])[-1]
        request.summary = controls.get("_summary", [None])[-1]
        if request.summary == "count" and "_total" not in controls:
            request.total = "accurate"  # the count is all that was asked for: give it exactly
        request.elements = [e for v in controls.get("_elements", []) for e in v.split(",") if e] or None
        limits.check_includes(len(include_values[False]) + len(include_values[True]), settings)
        for reverse in (False, True):
            values = include_values[reverse]
            request.includes += include.parse_includes(
                [v for v, _ in values], reverse, [i for _, i in values]
            )
        for spec in request.includes:
            include.check_known(self.registry, self.types, spec)
        self._check_criteria(request, strict)
        return request

    def _check_criteria(self, request: SearchRequest, strict: bool) -> None:
        """Unknown parameters: an error when strict, else dropped and reported."""
        kept = []
        for crit in request.criteria:
            if crit.name.startswith("_has") or crit.name.startswith("_filter"):
                kept.append(crit)
                continue
            if all(self.registry.get(t, crit.name) is not None for t in request.res_types):
                kept.append(crit)
                continue
            message = f"Unknown search parameter '{crit.name}' for {', '.join(request.res_types)}"
            if strict:
                raise BadRequest(
                    f"{message} (see /metadata for the supported ones; "
                    "'Prefer: handling=lenient' ignores unknown parameters)"
                )
            request.issues.append(Issue("warning", "not-supported", f"{message}: ignored"))
            request.used = [(k, v) for k, v in request.used if k != crit.raw_name]
        request.criteria = kept

    def _conditions(
        self, conn: Connection, request: SearchRequest, scope: ReadScope
    ) -> list[ColumnElement[bool]]:
        """One condition on resource.rid per criterion (an OR over the types it applies to),
        and the caller's read scope: matches are only what the caller may see, so the page,
        its paging and the total count the same rows."""
        bases = tuple(dict.fromkeys(b for b in (self.base_url, request.base_url) if b))
        compiler = Compiler(
            self.registry,
            conn,
            scope,
            bases,
            self.expander,
            self.ordered_prefix,
            max_chain_depth=self.settings.max_chain_depth,
        )
        out = []
        single = len(request.res_types) == 1
        visible = [(t, scope.searchable(t, resource.c.rid)) for t in request.res_types]
        if single:
            if visible[0][1] is not None:
                out.append(visible[0][1])
        elif any(condition is not None for _, condition in visible):
            out.append(
                or_(
                    *[
                        resource.c.res_type == t if c is None else and_(resource.c.res_type == t, c)
                        for t, c in visible
                    ]
                )
            )
        for crit in request.criteria:
            if single:
                out.append(compiler.condition(request.res_types[0], crit, resource.c.rid))
                continue
            # Each type's test holds for rows of that type only: a negated test (`:not`,
            # `:missing=true`) of one type would otherwise let every row of the others through.
            out.append(
                or_(
                    *[
                        and_(resource.c.res_type == t, compiler.condition(t, crit, resource.c.rid))
                        for t in request.res_types
                    ]
                )
            )
        return out

    def _filtered(
        self, conn: Connection, request: SearchRequest, conditions: list[ColumnElement[bool]]
    ) -> Select:
        query = select(resource.c.rid).where(live(resource))
        if len(request.res_types) == 1:
            query = query.where(resource.c.res_type == request.res_types[0])
        else:
            query = query.where(resource.c.res_type.in_(request.res_types))
        return query.where(*conditions)

    def _walk(
        self, conn: Connection, request: SearchRequest, conditions: list[ColumnElement[bool]]
    ) -> walk.Walked | None:
        """The page by walking rid order (search/walk.py), where that applies and pays.

        PostgreSQL only: SQLite re-plans the correlated check for every row (see walk.py)."""
        applies, after = self._forward_in_rid_order(conn, request)
        if not applies:
            return None
        return walk.first_page(conn, request.res_types[0], conditions, after, request.count + 1)

    def _forward_in_rid_order(self, conn: Connection, request: SearchRequest) -> tuple[bool, int | None]:
        """Whether a page can be read forward in rid order from an index (PostgreSQL, one type,
        the default sort, no `previous` cursor), and the rid it starts after."""
        if conn.dialect.name != "postgresql" or request.sort or len(request.res_types) != 1:
            return False, None
        if not request.cursor:
            return True, None
        values, backwards = paging.decode_cursor(request.cursor, request.sort)
        if backwards or len(values) != 1 or not isinstance(values[0], int):
            return False, None
        return True, values[0]

    def execute(self, conn: Connection, request: SearchRequest, scope: ReadScope) -> SearchPage:
        with _within_database_limits():
            return self._execute(conn, request, scope)

    def _execute(self, conn: Connection, request: SearchRequest, scope: ReadScope) -> SearchPage:
        conditions = self._conditions(conn, request, scope)
        filtered = self._filtered(conn, request, conditions)
        mode = "accurate" if request.summary == "count" and request.total == "none" else request.total
        bound = self.settings.exact_total_up_to
        if request.summary == "count" or request.count == 0:
            return SearchPage([], [], totals.count(conn, filtered, mode, bound), None, None)
        # One system|code alone: straight from the token index, whatever the code's breadth
        # (its count is bounded); anything else: walk rid order when that pays.
        by_token = self._token_page(conn, request, mode, scope)
        if by_token is not None:
            return by_token
        walked = self._walk(conn, request, conditions)
        if walked is not None:
            return self._page(
                conn,
                request,
                [(r, r) for r in walked.rids],
                self._walk_total(conn, request, walked, filtered, mode, bound),
                backwards=False,
                scope=scope,
            )
        query, columns = paging.sort_columns(
            filtered, request.sort, request.res_types, self.registry, request.criteria, scope, conn.dialect.name
        )
        query = query.add_columns(*[c for c, _ in columns])
        backwards = False
        if request.cursor:
            values, backwards = paging.decode_cursor(request.cursor, request.sort)
            if len(values) != len(columns):
                raise BadRequest("_cursor does not belong to this search (its sort changed)")
            query = query.where(paging.after(columns, values, backwards))
        counted_here = not request.cursor and mode != "none"
        if counted_here and conn.dialect.name == "postgresql":
            # Here PostgreSQL evaluates every match before sorting them (the walk, which does
            # not, gave up or does not apply): counting them in the same pass is nearly free.
            query = query.add_columns(func.count().over())
            query = query.order_by(*paging.order_by(columns)).limit(request.count + 1)
            counted = conn.execute(query).all()
            total = counted[0][-1] if counted else 0
            return self._page(conn, request, [r[:-1] for r in counted], total, backwards, scope)
        # A first page reads on up to the exact-count bound: when the matches end before it,
        # their number is the total, and the search was evaluated once instead of twice.
        fetch = max(request.count, bound if counted_here else 0) + 1
        query = query.order_by(*paging.order_by(columns, reverse=backwards)).limit(fetch)
        rows = conn.execute(query).all()
        if counted_here and len(rows) < fetch:
            total: int | None = len(rows)
        else:
            total = totals.count(conn, filtered, mode, bound)
            if total is not None and counted_here:
                total = max(total, len(rows))  # an estimate never below the matches just read
        return self._page(conn, request, rows, total, backwards, scope)

    def _token_page(
        self, conn: Connection, request: SearchRequest, mode: str, scope: ReadScope
    ) -> SearchPage | None:
        """A search on one `system|code` and nothing else, from the token index alone
        (search/walk.py), on PostgreSQL, in rid order: the ROR consumer's commonest query."""
        applies, after = self._forward_in_rid_order(conn, request)
        if not applies or len(request.criteria) != 1:
            return None
        crit = request.criteria[0]
        res_type = request.res_types[0]
        param = self.registry.get(res_type, crit.name)
        if param is None or param.type != "token" or param.via or crit.modifier or crit.chain:
            return None  # a chained parameter (param.via) has no index rows of its own
        if crit.tree is not None:
            return None
        if len(crit.values) != 1:
            return None
        system, code = split_token(crit.values[0])
        if not system or not code:
            return None
        system, code = fit(idx_token.c.system, system), fit(idx_token.c.code, code)
        bound = self.settings.exact_total_up_to
        rids, matches, counted = walk.token_page(
            conn,
            res_type,
            param.code,
            system,
            code,
            after,
            request.count + 1,
            lambda rid: scope.searchable(res_type, rid),
            count_up_to=bound if mode == "estimate" else None,
        )
        # Exact up to the bound (at most bound + 1 index rows read), estimated above it.
        if counted is None:
            total = totals.count(conn, matches, mode, bound)
        else:
            total = counted if counted <= bound else max(counted, totals.planner_rows(conn, matches))
        return self._page(conn, request, [(r, r) for r in rids], total, backwards=False, scope=scope)

    def _walk_total(
        self,
        conn: Connection,
        request: SearchRequest,
        walked: walk.Walked,
        filtered: Select,
        mode: str,
        bound: int,
    ) -> int | None:
        if mode == "none":
            return None
        if walked.complete and not request.cursor and len(walked.rids) <= request.count:
            return len(walked.rids)  # every row of the type was checked: this is the count
        # The rate the walk saw is a better estimate than the planner's, once the bounded count
        # has shown that an estimate is due: scaled from a page of one or two, it made 1,487
        # of 11 matches (every match may be among the first rows).
        seen_rate = None if walked.complete else (lambda: walk.estimate(conn, walked))
        return totals.count(conn, filtered, mode, bound, seen_rate)

    def _page(
        self,
        conn: Connection,
        request: SearchRequest,
        rows: Sequence[Sequence[Any]],
        total: int | None,
        backwards: bool,
        scope: ReadScope,
    ) -> SearchPage:
        """The page from its sorted rows (rid, then the sort values), with its paging cursors."""
        rows = list(rows)
        more = len(rows) > request.count
        rows = rows[: request.count]
        if backwards:
            rows.reverse()
        positions = [list(r[1:]) for r in rows]
        matches = repository.get_many(conn, [r[0] for r in rows])
        next_cursor = previous_cursor = None
        if rows:
            if backwards:
                # Reached by `previous`: a later page exists; an earlier one if more rows remain.
                next_cursor = paging.encode_cursor(positions[-1], request.sort)
                previous_cursor = (
                    paging.encode_cursor(positions[0], request.sort, backwards=True) if more else None
                )
            else:
                next_cursor = paging.encode_cursor(positions[-1], request.sort) if more else None
                previous_cursor = (
                    paging.encode_cursor(positions[0], request.sort, backwards=True)
                    if request.cursor
                    else None
                )
        included = (
            include.resolve(
                conn,
                self.registry,
                request.includes,
                matches,
                include.Bounds(self.settings.max_include_depth, self.settings.max_included),
                scope,
            )
            if request.includes
            else []
        )
        distances = near.distances(conn, request.criteria, request.res_types, scope, [m.rid for m in matches])
        return SearchPage(matches, included, total, next_cursor, previous_cursor, distances)

    def find(
        self,
        conn: Connection,
        res_type: str,
        params: list[tuple[str, str]],
        scope: ReadScope,
        limit: int = 2,
    ) -> list[StoredResource]:
        """Strict matching for conditional operations: unknown parameters are errors. Only what
        the caller may see can match, so a conditional write cannot reveal hidden entries."""
        self.ensure_current(conn)
        request = self.prepare(res_type, params, strict=True)
        if not request.criteria:
            raise BadRequest("A conditional operation needs at least one search criterion")
        with _within_database_limits():
            filtered = self._filtered(conn, request, self._conditions(conn, request, scope))
            rids = [r for (r,) in conn.execute(filtered.order_by(resource.c.rid).limit(limit))]
        return repository.get_many(conn, rids)

    def conditions_for(
        self, conn: Connection, res_type: str, params: list[tuple[str, str]], scope: ReadScope
    ) -> list[ColumnElement[bool]]:
        """The conditions on `resource.rid` that a search of `res_type` with `params` applies:
        its criteria (strict: unknown parameters are errors) and the caller's read scope, for a
        caller that reads the matching rows its own way (bulk export walks them in rid order).
        The same compiler as every search, so a filter means here what it means in a search."""
        self.ensure_current(conn)
        request = self.prepare(res_type, params, strict=True)
        with _within_database_limits():
            return self._conditions(conn, request, scope)


    def matching(
        self,
        conn: Connection,
        res_type: str,
        params: list[tuple[str, str]],
        scope: ReadScope,
        among: Sequence[int] | None = None,
    ) -> set[int]:
        """The rows matching the search `params` as `scope` sees them, among these rids (None:
        every live row of the type): a Subscription's criteria, evaluated by the very engine
        that answers its owner's searches, so a notification never disagrees with a search.
        Unknown parameters are errors. With `among` empty, the criteria are only compiled
        (what a write of the Subscription checks), and nothing is read."""
        self.ensure_current(conn)
        request = self.prepare(res_type, params, strict=True)
        with _within_database_limits():
            query = self._filtered(conn, request, self._conditions(conn, request, scope))
            if among is None:
                return {r for (r,) in conn.execute(query)}
            found: set[int] = set()
            wanted = sorted(set(among))
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(r for (r,) in conn.execute(query.where(resource.c.rid.in_(chunk))))
            return found


@contextmanager
def _within_database_limits() -> Iterator[None]:
    """A search the database (or Python, building its SQL) finds too deep or too wide is the
    query's fault: 400, not 500. The settings' limits keep ordinary searches well inside these;
    this answers for the combinations they do not count (a chain inside `_has` inside `_filter`
    on SQLite, whose parser gives up first)."""
    try:
        yield
    except RecursionError as exc:
        raise TooCostly("The search is nested too deeply to be compiled; simplify it") from exc
    except DBAPIError as exc:
        if not too_complex(exc):
            raise
        raise TooCostly(
            "The search is too complex for the database (too deeply nested or too many joins); simplify it"
        ) from exc
