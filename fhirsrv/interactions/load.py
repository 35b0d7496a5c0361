"""Loading resources from files: JSON resources, Bundles and NDJSON, one file = one transaction.

Used by `fhirsrv load` and by the first start of `fhirsrv serve` (conformance, terminology and
demo content). A bad resource stops its file with an error naming the file and the entry (or
NDJSON line), and nothing of that file is written. The first start's content is one unit: all
its files in one transaction, so a start killed half-way leaves an empty database that the next
start fills, instead of a database that looks loaded and lacks half the demo.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy import text as sql_text

from fhirsrv.access.principal import SERVER
from fhirsrv.errors import FhirError
from fhirsrv.interactions import bundle, writes
from fhirsrv.interactions.context import UNMETERED, RequestInfo, Services
from fhirsrv.interactions.load_pipeline import ChunkResult, Prepared, PreparePool, worker_count
from fhirsrv.interactions.resources import check_resource, check_type
from fhirsrv.search.registry import stored_definitions
from fhirsrv.settings import Settings
from fhirsrv.storage import bulk, repository
from fhirsrv.storage.engine import read_transaction, write_transaction

log = logging.getLogger("fhirsrv")
DEFAULT_CANONICAL_BASE = Settings.canonical_base
# Serialises first starts of several processes on one PostgreSQL database: the second waits,
# then finds the content loaded (arbitrary constant, scoped to the schema like the others).
FIRST_LOAD_LOCK_KEY = 7_300_014


# Shipped content that is not stored: profiles/r4 holds the specification's own definitions,
# built in rather than stored; examples are test material, not conformance content.
NOT_CONFORMANCE = ("r4", "examples", "ror-examples")


class LoadError(Exception):
    """A file could not be loaded; nothing of it was written."""


@dataclass
class LoadReport:
    counts: Counter[str] = field(default_factory=Counter)
    files: int = 0
    unchanged: int = 0


def iter_files(path: Path, exclude: tuple[str, ...] = ()) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            rel = child.relative_to(path).parts
            if (
                child.is_file()
                and child.suffix in (".json", ".ndjson")
                and not any(p in exclude for p in rel)
            ):
                yield child
    elif path.is_file():
        yield path
    else:
        raise LoadError(f"{path}: no such file or directory")


def _read_text(path: Path, canonical_base: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not UTF-8 text ({exc})") from exc
    if canonical_base != DEFAULT_CANONICAL_BASE:
        text = text.replace(DEFAULT_CANONICAL_BASE, canonical_base.rstrip("/"))
    return text


def _resources(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """(where, parsed JSON) for each resource of the file."""
    if path.suffix == ".ndjson":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}, line {number}", orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise LoadError(f"{path}, line {number}: invalid JSON ({exc})") from exc
        return
    try:
        yield str(path), orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LoadError(f"{path}: invalid JSON ({exc})") from exc


def upsert(services: Services, conn: Connection, res: dict[str, Any], *, validated: bool = False) -> bool:
    """Create or update `res` under its own id; False when the stored version is identical."""
    check_type(res["resourceType"], writable=True)
    res_id = res.get("id")
    if not res_id:
        writes.create(services, conn, res, actor=SERVER, validated=validated)
        return True
    current = repository.get_current(conn, res["resourceType"], str(res_id))
    if current is None:
        writes.create(services, conn, res, str(res_id), actor=SERVER, validated=validated)
        return True
    if writes.unchanged(current, res):
        return False
    writes.replace(services, conn, current, res, actor=SERVER, validated=validated)
    return True


BATCH = 500


def _store_batch(
    services: Services, conn: Connection, batch: list[tuple[str, Any]], counts: Counter[str]
) -> int:
    """Validate then write a batch: new ids in one bulk insert, existing ones one by one.

    Returns how many were identical to what is stored (and so not written again)."""
    unchanged = 0
    fresh: list[tuple[dict[str, Any], str]] = []
    keyed: list[tuple[str, dict[str, Any]]] = []
    for label, res in batch:
        try:
            check_resource(res)
            check_type(res["resourceType"], writable=True)
            writes.validate(services, res, SERVER, with_profiles=False)
        except FhirError as exc:
            raise LoadError(f"{label}: {exc.diagnostics}") from exc
        keyed.append((label, res))
    existing = repository.get_by_keys(
        conn, [(r["resourceType"], str(r["id"])) for _, r in keyed if r.get("id")]
    )
    seen: set[tuple[str, str]] = set()
    for label, res in keyed:
        key = (res["resourceType"], str(res.get("id") or ""))
        try:
            if res.get("id") and key not in existing and key not in seen:
                seen.add(key)
                fresh.append((res, key[1]))
                counts[key[0]] += 1
            elif upsert(services, conn, res, validated=True):
                counts[key[0]] += 1
            else:
                unchanged += 1
        except FhirError as exc:
            raise LoadError(f"{label}: {exc.diagnostics}") from exc
    if fresh:
        try:
            writes.create_many(services, conn, fresh, actor=SERVER)
        except FhirError as exc:
            raise LoadError(f"{batch[0][0]} and following: {exc.diagnostics}") from exc
    return unchanged


@contextmanager
def _file_transaction(services: Services, conn: Connection | None) -> Iterator[Connection]:
    """The file's own transaction, or the caller's when the file is part of a larger unit.

    Either way the access facts of what it loads are refreshed once, when the outermost unit
    ends (facts.deferred nests), and the statement timeout does not bound a load."""
    if conn is not None:
        with services.policy.facts.deferred(conn):
            yield conn
        return
    with write_transaction(services.engine, unbounded=True) as own, services.policy.facts.deferred(own):
        yield own


def _entry_type(entry: dict[str, Any]) -> str:
    """The resource type a transaction entry writes: its resource's, else its request URL's."""
    resource_type = (entry.get("resource") or {}).get("resourceType")
    if resource_type:
        return str(resource_type)
    return str((entry.get("request") or {}).get("url", "")).split("?")[0].split("/")[0]


def load_file(services: Services, path: Path, report: LoadReport, conn: Connection | None = None) -> None:
    """One file in one transaction (`conn`'s, when given)."""
    text = _read_text(path, services.settings.canonical_base)
    info = RequestInfo(
        base_url=services.settings.base_url or "urn:fhirsrv",
        principal=SERVER,
        meter=UNMETERED,
        prefer_return="minimal",
    )
    counts: Counter[str] = Counter()
    unchanged = 0
    try:
        with _file_transaction(services, conn) as conn:
            batch: list[tuple[str, Any]] = []
            for where, item in _resources(path, text):
                if (
                    isinstance(item, dict)
                    and item.get("resourceType") == "Bundle"
                    and item.get("type")
                    in (
                        "transaction",
                        "batch",
                    )
                ):
                    bundle.process(services, info, {**item, "type": "transaction"}, conn)
                    # Counted from the request (the answer's entries are serialised JSON): a
                    # transaction either wrote every entry or raised.
                    for entry in item.get("entry") or []:
                        counts[_entry_type(entry)] += 1
                    continue
                if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                    batch += [
                        (f"{where}, entry {i}", e.get("resource"))
                        for i, e in enumerate(item.get("entry") or [])
                    ]
                else:
                    batch.append((where, item))
                if len(batch) >= BATCH:
                    unchanged += _store_batch(services, conn, batch, counts)
                    batch = []
            if batch:
                unchanged += _store_batch(services, conn, batch, counts)
    except FhirError as exc:
        raise LoadError(f"{path}: {exc.diagnostics}") from exc
    _loaded(path, report, counts, unchanged)


def _loaded(path: Path, report: LoadReport, counts: Counter[str], unchanged: int) -> None:
    report.counts.update(counts)
    report.unchanged += unchanged
    report.files += 1
    log.debug("loaded %s: %s written, %s unchanged", path, sum(counts.values()), unchanged)


def _store_prepared(
    services: Services, conn: Connection, chunk: ChunkResult, counts: Counter[str], registry: object
) -> int:
    """Write one prepared chunk: new ids at driver speed, ids already stored one by one.

    Returns how many were identical to what is stored. When a SearchParameter loaded earlier
    changed the registry since the workers started, index rows are recomputed here instead."""
    existing = repository.get_by_keys(conn, [(p.res_type, p.res_id) for p in chunk.items if p.given_id])
    fresh: list[Prepared] = []
    again: list[Prepared] = []
    seen: set[tuple[str, str]] = set()
    for p in chunk.items:
        key = (p.res_type, p.res_id)
        (again if key in existing or key in seen else fresh).append(p)
        seen.add(key)
    stale = services.search.registry is not registry
    try:
        writes.create_prepared(
            services,
            conn,
            [(p.res_type, p.res_id, p.content, None if stale else p.rows) for p in fresh],
            chunk.now,
            actor=SERVER,
        )
    except FhirError as exc:
        raise LoadError(f"{chunk.items[0].label} and following: {exc.diagnostics}") from exc
    counts.update(p.res_type for p in fresh)
    unchanged = 0
    for p in again:
        try:
            if upsert(services, conn, orjson.loads(p.content), validated=True):
                counts[p.res_type] += 1
            else:
                unchanged += 1
        except FhirError as exc:
            raise LoadError(f"{p.label}: {exc.diagnostics}") from exc
    return unchanged


def load_file_parallel(
    services: Services, path: Path, report: LoadReport, pool: PreparePool, conn: Connection | None = None
) -> None:
    """An NDJSON file through the worker pool; same outcome as `load_file`, several times faster."""
    counts: Counter[str] = Counter()
    unchanged = 0
    new_ids = iter(writes.new_id, None)
    with _file_transaction(services, conn) as conn:
        for number, chunk in enumerate(pool.prepared_chunks(path, new_ids), 1):
            if chunk.error:
                raise LoadError(chunk.error)
            unchanged += _store_prepared(services, conn, chunk, counts, pool.registry)
            if number in (1, 20, 400):  # the table grows fast: keep the planner's view of it current
                bulk.analyze_resources(conn)
    _loaded(path, report, counts, unchanged)


# Below this size a file loads faster in-process than it takes to start the workers; once they
# run, every NDJSON file goes through them.
PARALLEL_MIN_BYTES = 4_000_000


class _Pools:
    """Starts the worker pool at the first large NDJSON file; restarts it if the registry changed."""

    def __init__(self, services: Services, conn: Connection | None) -> None:
        self.services = services
        # The load's transaction when it has one: SearchParameters it loaded are not committed.
        self.conn = conn
        self.pool: PreparePool | None = None

    def for_file(self, path: Path) -> PreparePool | None:
        services = self.services
        if path.suffix != ".ndjson" or (self.pool is None and path.stat().st_size < PARALLEL_MIN_BYTES):
            return None
        if worker_count(services.settings) < 1:
            return None
        if self.pool is not None and self.pool.registry is not services.search.registry:
            self.close()
        if self.pool is None:
            if self.conn is not None:
                stored = list(stored_definitions(self.conn))
            else:
                with read_transaction(services.engine) as conn:
                    stored = list(stored_definitions(conn))
            self.pool = PreparePool(services.settings, services.search.registry, stored)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


@contextmanager
def _older_objects_set_aside() -> Iterator[None]:
    """Keep what the process held before the load out of the garbage collector's full passes.

    A load allocates millions of objects, so the collector runs its full pass often, and each
    one walked every object of the process -- the registry, the validation shapes, the
    terminology -- none of which the load frees: a fifth of the loading process's CPU on
    PostgreSQL. They are set aside (gc.freeze) while the load runs and handed back after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def load_paths(
    services: Services, paths: list[Path], exclude: tuple[str, ...] = (), conn: Connection | None = None
) -> LoadReport:
    """Every file under `paths`, each in its own transaction; or all in `conn`'s, when given
    (the caller then refreshes the statistics once it has committed)."""
    report = LoadReport()
    pools = _Pools(services, conn)
    try:
        with _older_objects_set_aside():
            for root in paths:
                for path in iter_files(root, exclude):
                    pool = pools.for_file(path)
                    if pool is not None:
                        load_file_parallel(services, path, report, pool, conn)
                    else:
                        load_file(services, path, report, conn)
    finally:
        pools.close()
    if report.counts and conn is None:
        # Whatever its size: on a fresh database even the demo region (3,525 resources) left
        # PostgreSQL planning without statistics, a `_has` search for minutes. On a large one a
        # small load costs a sampled ANALYZE and a VACUUM of pages mostly all-visible already.
        bulk.refresh_statistics(services.engine)
    return report


def load_initial_content(services: Services, *, demo: bool) -> LoadReport | None:
    """On an empty database: conformance and terminology content, then the demo region, all in
    one transaction (all or nothing). None when the database already holds resources."""
    settings = services.settings
    with write_transaction(services.engine, unbounded=True) as conn, services.policy.facts.deferred(conn):
        if conn.dialect.name == "postgresql":
            conn.execute(
                sql_text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": FIRST_LOAD_LOCK_KEY}
            )
        if not repository.is_empty(conn):
            return None
        log.info(
            "empty database: loading the conformance, terminology%s content in one transaction "
            "(if interrupted, nothing is kept and the next start loads it all again)",
            " and demo" if demo else "",
        )
        report = load_paths(services, conformance_paths(settings), exclude=NOT_CONFORMANCE, conn=conn)
        demo_dir = settings.seed_dir / "demo"
        if demo and demo_dir.exists():
            demo_report = load_paths(services, [demo_dir], conn=conn)
            report.counts.update(demo_report.counts)
            report.files += demo_report.files
            report.unchanged += demo_report.unchanged
    if report.counts:
        bulk.refresh_statistics(services.engine)
    return report


def conformance_paths(settings: Settings) -> list[Path]:
    """Where the shipped conformance and terminology content lies (see NOT_CONFORMANCE)."""
    return [p for p in (settings.terminology_dir, settings.profiles_dir) if p.exists()]


def load_missing_conformance(services: Services) -> LoadReport:
    """The shipped conformance and terminology resources the database has never held, in one
    transaction (`fhirsrv db upgrade`): a database started by an earlier version lacks what
    was shipped since, e.g. the first release's every SOS code system and profile. One it
    holds, even changed through the API or deleted, is left as it is: an administrator's
    change is not undone by an upgrade. An empty database is left empty: its first start
    loads the content (and the demo region, if asked) as one unit."""
    settings = services.settings
    report = LoadReport()
    wanted: list[tuple[str, Any]] = []
    for root in conformance_paths(settings):
        for path in iter_files(root, NOT_CONFORMANCE):
            wanted += list(_resources(path, _read_text(path, settings.canonical_base)))
            report.files += 1
    types = sorted({str(res.get("resourceType")) for _, res in wanted})
    with _file_transaction(services, None) as conn:
        if conn.dialect.name == "postgresql":  # as a first start: two upgrades at once add it once
            lock = sql_text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))")
            conn.execute(lock, {"k": FIRST_LOAD_LOCK_KEY})
        if repository.is_empty(conn):  # a new database: its first start loads all of it, demo too
            return report
        held = repository.keys_of_types(conn, types)
        missing = [(w, res) for w, res in wanted if (res.get("resourceType"), str(res.get("id"))) not in held]
        if missing:
            _store_batch(services, conn, missing, report.counts)
    report.unchanged = len(wanted) - len(missing)
    if report.counts:
        bulk.refresh_statistics(services.engine)
    return report
