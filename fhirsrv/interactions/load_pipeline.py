"""The parallel half of the bulk loader: parse, validate and extract index rows in worker processes.

Checking a resource's structure and computing its index rows cost most of a load's CPU; the
database needs little of it. So large NDJSON files
are cut into chunks that worker processes prepare (JSON parsing, structure validation, stamping,
index rows as plain tuples) while the parent writes the chunks already prepared, in file order,
in the file's single transaction.

Workers are started with "spawn": the parent may be a server with threads and open connections,
which a forked child must not inherit. Each rebuilds the search registry from the definitions it
is given, so it indexes exactly as the parent would. A worker dies with its parent: a load killed
with -9 would otherwise leave them waiting forever on a queue whose other end they hold too.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from fhirsrv.errors import FhirError
from fhirsrv.interactions.resources import check_id, check_resource, check_type
from fhirsrv.interactions.writes import LOADED_VISIBILITY
from fhirsrv.orphans import die_with_parent
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.engine import loaded_columns
from fhirsrv.search.extract import extract
from fhirsrv.search.fit import LIMITS
from fhirsrv.search.registry import SearchParamRegistry, build_registry
from fhirsrv.settings import Settings
from fhirsrv.storage.bulk import columns_of, copy_field, escape_text
from fhirsrv.storage.jsonfmt import dumps, utcnow
from fhirsrv.storage.repository import stamp
from fhirsrv.storage.schema import INDEX_TABLES
from fhirsrv.validation.structure import validate_structure

CHUNK = 500
# Index row tuples leave out rid, which only the parent knows: (res_type, param, *values).
VALUE_COLUMNS = {t.name: tuple(c for c in columns_of(t) if c != "rid") for t in INDEX_TABLES}
# For COPY text (PostgreSQL): the value columns after (rid, res_type) with the length text is
# cut to (search/fit.py; 0: not cut), and whether a `public` flag ends the line
# (search/engine.loaded_columns).
_COPY_VALUES = {
    t.name: tuple((c, LIMITS[t.name].get(c, 0)) for c in VALUE_COLUMNS[t.name][1:]) for t in INDEX_TABLES
}
_COPY_PUBLIC = {t.name: loaded_columns(t.name)[-1] == "public" for t in INDEX_TABLES}


@dataclass
class Prepared:
    """One resource ready to store as version 1, with its index rows."""

    label: str
    res_type: str
    res_id: str
    given_id: bool
    content: str  # stamped as version 1; stamps aside, what the line said
    # Index rows as tuples without rid (SQLite), or as COPY text lines without rid (PostgreSQL).
    rows: dict[str, list[tuple[Any, ...]]] | dict[str, bytes] = field(default_factory=dict)


@dataclass
class ChunkResult:
    items: list[Prepared]
    now: datetime
    error: str | None = None


@dataclass
class _WorkerState:
    registry: SearchParamRegistry
    base_url: str
    default_base: str
    canonical_base: str
    # PostgreSQL: index rows as COPY text, with this first `public` flag on token rows.
    copy_public: bool | None = None


_state: _WorkerState | None = None


def _init_worker(settings: Settings, stored_parameters: list[dict[str, Any]], parent: int) -> None:
    global _state
    die_with_parent(parent)
    registry = build_registry(settings, SUPPORTED_TYPES)
    for definition in stored_parameters:
        registry.add_definition(definition, SUPPORTED_TYPES)
    _state = _WorkerState(
        registry,
        settings.base_url.rstrip("/"),
        Settings.canonical_base,
        settings.canonical_base.rstrip("/"),
        _copy_public(settings),
    )


def _copy_public(settings: Settings) -> bool | None:
    """The `public` flag a load's token rows start with when it writes COPY text, else None."""
    if not settings.database_url.startswith("postgresql"):
        return None
    return LOADED_VISIBILITY == "public"


def index_tuples(registry: SearchParamRegistry, res: dict[str, Any], base_url: str) -> dict[str, list[tuple]]:
    res_type = res["resourceType"]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, rows in extract(registry, res, base_url).items():
        columns = VALUE_COLUMNS[table]
        out[table] = [tuple(res_type if c == "res_type" else row.get(c) for c in columns) for row in rows]
    return out


def index_copy(
    registry: SearchParamRegistry, res: dict[str, Any], base_url: str, public: bool
) -> dict[str, bytes]:
    """The resource's index rows as COPY text lines without rid (storage/bulk.py), by table."""
    head = "\t" + copy_field(res["resourceType"])
    flag = "\t" + copy_field(public) + "\n"
    out: dict[str, bytes] = {}
    for table, rows in extract(registry, res, base_url, cut=False).items():
        columns = _COPY_VALUES[table]
        end = flag if _COPY_PUBLIC[table] else "\n"
        out[table] = "".join([head + _copy_fields(row, columns) + end for row in rows]).encode()
    return out


def _copy_fields(row: dict[str, Any], columns: tuple[tuple[str, int], ...]) -> str:
    """An index row's values as COPY text fields, each preceded by its tab; text cut to its
    column as fit.fit_rows cuts it (one pass over the row instead of two)."""
    fields = []
    for name, limit in columns:
        value = row.get(name)
        if value.__class__ is str:
            fields.append(escape_text(value[:limit] if limit and len(value) > limit else value))
        else:
            fields.append(copy_field(value))
    return "\t" + "\t".join(fields)


def prepare(
    registry: SearchParamRegistry,
    res: Any,
    label: str,
    now: datetime,
    base_url: str,
    new_id: str,
    copy_public: bool | None = None,
) -> Prepared:
    """Check one parsed resource and compute what storing it writes; raises FhirError."""
    check_resource(res)
    check_type(res["resourceType"], writable=True)
    given = res.get("id")
    if given is not None:
        check_id(str(given))
    errors = [i for i in validate_structure(res) if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError(errors[0].diagnostics)
    res_id = str(given) if given else new_id
    stamped = stamp(res, res_id, 1, now)
    return Prepared(
        label,
        res["resourceType"],
        res_id,
        bool(given),
        dumps(stamped),
        index_tuples(registry, stamped, base_url)
        if copy_public is None
        else index_copy(registry, stamped, base_url, copy_public),
    )


def _prepare_chunk(path: str, numbered: list[tuple[int, str]], now: datetime, ids: list[str]) -> ChunkResult:
    assert _state is not None, "worker not initialised"
    items = []
    for (number, line), new_id in zip(numbered, ids, strict=True):
        label = f"{path}, line {number}"
        if _state.canonical_base != _state.default_base:
            line = line.replace(_state.default_base, _state.canonical_base)
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return ChunkResult(items, now, f"{label}: invalid JSON ({exc})")
        try:
            prepared = prepare(_state.registry, res, label, now, _state.base_url, new_id, _state.copy_public)
            items.append(prepared)
        except FhirError as exc:
            return ChunkResult(items, now, f"{label}: {exc.diagnostics}")
    return ChunkResult(items, now)


def numbered_chunks(path: Path, size: int = CHUNK) -> Iterator[list[tuple[int, str]]]:
    """Non-blank lines with their numbers, `size` at a time, reading the file as a stream."""
    chunk: list[tuple[int, str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                chunk.append((number, line.rstrip("\n")))
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def worker_count(settings: Settings) -> int:
    """FHIRSRV_LOAD_WORKERS, else one worker process per core."""
    if settings.load_workers is not None:
        return settings.load_workers
    return os.cpu_count() or 1


class PreparePool:
    """Worker processes for one load; `registry` is what they were started with."""

    def __init__(
        self, settings: Settings, registry: SearchParamRegistry, stored: list[dict[str, Any]]
    ) -> None:
        self.registry = registry
        self.workers = worker_count(settings)
        self._executor = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(settings, stored, os.getpid()),
        )

    def prepared_chunks(self, path: Path, new_ids: Iterator[str]) -> Iterator[ChunkResult]:
        """Chunks of the file, prepared in the workers, in file order, a few in flight at a time."""
        pending: list[Future[ChunkResult]] = []
        limit = self.workers * 2 + 1
        try:
            for chunk in numbered_chunks(path):
                ids = [next(new_ids) for _ in chunk]
                pending.append(self._executor.submit(_prepare_chunk, str(path), chunk, utcnow(), ids))
                if len(pending) >= limit:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
