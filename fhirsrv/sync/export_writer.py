"""Writes one `$export` job's NDJSON files, streaming from the database in constant memory.

One read transaction holds the whole export, so every file shows the directory as one instant
left it (the manifest's transactionTime): on PostgreSQL a REPEATABLE READ, READ ONLY
transaction (its snapshot is taken at its first statement and kept to its end), on SQLite a
read transaction, which WAL keeps on one snapshot while writers go on.

Each type's rows are read in rid order in keyset chunks (`rid > last ORDER BY rid LIMIT n`),
fetched through a server-side cursor, and their stored JSON — which already carries
meta.versionId and meta.lastUpdated, as a read serves it — is written as it is, one line each.
Nothing holds more than a chunk: memory does not grow with the directory (bench/export_bench.py
measures the process's peak RSS).

Which rows: exactly those a search of the type by the job's caller would match. The read scope
(services.policy.scope) and each `_typeFilter` are compiled by the search engine
(SearchEngine.conditions_for) into conditions on the row, as for a search page.

Time is the change log's (storage/changes.py), not `lastUpdated`: a write stamps lastUpdated
before it commits, so a long transaction (a `fhirsrv load`, a large Bundle) stamped before an
export's snapshot and committed after it would be in neither that export nor the next one
`_since` its transactionTime. The change log numbers changes in commit order and records when
each committed. So the manifest's transactionTime is the commit instant of the last change the
snapshot holds (the snapshot holds every change that committed up to it), and `_since` keeps
the entries with a change committed at or after it: a new version, or a new visibility without
one (the offers of a structure just published join the public view without a version of
their own). A change committed at that very instant may come twice, never not at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, Connection, Engine, and_, not_, or_, select, true

from fhirsrv.access.visibility import PrincipalScope
from fhirsrv.interactions.context import Services
from fhirsrv.storage import changes
from fhirsrv.storage.jsonfmt import dumps, format_instant, loads, utcnow
from fhirsrv.storage.schema import change_log, live, resource
from fhirsrv.sync.export_jobs import ExportFile, ExportJob
from fhirsrv.sync.export_request import EXPORT_ORDER

# Rows per keyset query, and rows the driver fetches at a time within it: a chunk is a few MB
# of JSON at most, and a query short enough for the statement timeout at any size.
CHUNK_ROWS = 2000
FETCH_ROWS = 500
# Through a server-side cursor on PostgreSQL (psycopg's named cursor), FETCH_ROWS at a time.
_STREAMED = {"stream_results": True, "yield_per": FETCH_ROWS}
# The job's progress (X-Progress) and whether it was cancelled are checked this often.
PROGRESS_EVERY_SECONDS = 1.0


class Cancelled(Exception):
    """The job was cancelled while it ran (DELETE on its status URL)."""


# Called with the progress text; False means the job is no longer wanted.
Progress = Callable[[str], bool]


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one instant of the database from its first statement on."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


class _Files:
    """The NDJSON files of one kind and type: a new file every `lines` lines."""

    def __init__(self, folder: Path, kind: str, res_type: str, prefix: str, lines: int) -> None:
        self.folder, self.kind, self.res_type, self.prefix, self.lines = folder, kind, res_type, prefix, lines
        self.done: list[ExportFile] = []
        self._out: IO[bytes] | None = None
        self._name = ""
        self._count = 0

    def write(self, line: bytes) -> None:
        if self._out is None or self._count >= self.lines:
            self._close()
            self._name = f"{self.prefix}-{len(self.done) + 1}.ndjson"
            self._out = open(self.folder / self._name, "wb", buffering=1 << 20)  # noqa: SIM115
            self._count = 0
        self._out.write(line)
        self._out.write(b"\n")
        self._count += 1

    def _close(self) -> None:
        if self._out is None:
            return
        self._out.flush()
        os.fsync(self._out.fileno())  # a manifest never lists a file a crash could leave half-written
        self._out.close()
        self.done.append(ExportFile(self.kind, self.res_type, self._name, self._count))
        self._out = None

    def close(self) -> list[ExportFile]:
        self._close()
        return self.done


def _line(content: str) -> bytes:
    """The stored JSON as one line. It is written compact (orjson escapes newlines in strings);
    should a row ever hold a raw newline, it is re-encoded rather than break the file."""
    return content.encode() if "\n" not in content else dumps(loads(content)).encode()


def _type_condition(
    services: Services, conn: Connection, job: ExportJob, res_type: str, scope: Any
) -> list[ColumnElement[bool]]:
    """The row conditions of one type: the caller's read scope, and its filters OR-ed."""
    engine = services.search
    filters = job.request.type_filters.get(res_type)
    if not filters:
        return engine.conditions_for(conn, res_type, [], scope)
    # Each filter's conditions carry the scope too: a row is exported when one filter, as
    # the caller's search, matches it.
    alternatives = [
        and_(*engine.conditions_for(conn, res_type, parse_qsl(q, keep_blank_values=True), scope))
        for q in filters
    ]
    return [or_(*alternatives)]


def _last_listed(conn: Connection, scope: PrincipalScope, types: tuple[str, ...], last: int) -> datetime | None:
    """When the last change of the snapshot that a history lists to this caller committed:
    the caller's transactionTime. The log's own last change may be a write the caller may not
    see (a draft), and its instant would tell when it happened; an export `_since` this earlier
    instant misses nothing the caller may see (the hidden changes in between stay hidden)."""
    shown, _ = scope.changes(types, change_log)
    c = change_log.c
    query = select(c.at).where(c.seq <= last, shown).order_by(c.seq.desc()).limit(1)
    return conn.execute(query).scalar_one_or_none()


def write_export(
    services: Services, job: ExportJob, folder: Path, progress: Progress
) -> tuple[datetime, list[ExportFile]]:
    """Write the job's files into `folder`; returns the snapshot's instant and the files.
    Raises Cancelled when `progress` says the job is no longer wanted."""
    settings = services.settings
    scope = services.policy.scope(job.principal)
    files: list[ExportFile] = []
    written = 0
    last_report = time.monotonic()

    def report(text: str, *, force: bool = False) -> None:
        nonlocal last_report
        if force or time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = time.monotonic()
            if not progress(text):
                raise Cancelled(job.id)

    with snapshot(services.engine) as conn:
        started = utcnow()
        # The snapshot starts with this statement: the last change it holds, and when it committed.
        last, last_commit = changes.tip(conn)
        if not job.principal.sees_everything:
            last_commit = _last_listed(conn, scope, job.request.types, last)
        transaction_time = last_commit or started  # no change ever (listed to the caller)
        since = job.request.since
        if since is not None and transaction_time < since:  # both naive UTC
            transaction_time = since  # nothing listed to the caller since: resume from there
        services.search.ensure_current(conn)
        for position, res_type in enumerate(job.request.types, 1):
            report(
                f"{res_type} ({position} of {len(job.request.types)} types): {written} resources written",
                force=True,
            )
            conditions = _type_condition(services, conn, job, res_type, scope)
            if job.request.since is not None:
                conditions.append(resource.c.rid.in_(_changed_since(res_type, job.request.since)))
            prefix = f"{EXPORT_ORDER.index(res_type) + 1:02d}-{res_type}"
            out = _Files(folder, "output", res_type, prefix, settings.export_file_lines)
            for content in _rows(conn, res_type, conditions):
                out.write(_line(content))
                written += 1
                if written % FETCH_ROWS == 0:
                    report(
                        f"{res_type} ({position} of {len(job.request.types)} types): {written} resources written"
                    )
            files += out.close()
        if job.request.since is not None:
            files += _gone(services, conn, folder, job, scope)
    if job.request.issues:
        files += _issues(folder, job)
    report(f"{written} resources written", force=True)
    return transaction_time, files


def _changed_since(res_type: str, since: datetime) -> Any:
    """The entries of the type with a change committed at or after `since` (change log)."""
    c = change_log.c
    return select(c.rid).where(c.at >= since, c.res_type == res_type)


def _rows(conn: Connection, res_type: str, conditions: list[ColumnElement[bool]]) -> Iterator[str]:
    """The stored JSON of the type's live matching rows, in rid order, a chunk at a time."""
    after: int | None = None
    while True:
        query = select(resource.c.rid, resource.c.content).where(
            resource.c.res_type == res_type, live(resource), *conditions
        )
        if after is not None:
            query = query.where(resource.c.rid > after)
        result = conn.execute(query.order_by(resource.c.rid).limit(CHUNK_ROWS), execution_options=_STREAMED)
        count = 0
        for rid, content in result:
            count += 1
            after = rid
            yield content
        if count < CHUNK_ROWS:
            return


def _gone(services: Services, conn: Connection, folder: Path, job: ExportJob, scope: Any) -> list[ExportFile]:
    """What left the caller's view at or after `_since`, as the IG's `deleted` files: one
    transaction Bundle a line, its entry a DELETE of the resource. An entry is gone when a
    change since then is one the caller's history would list (scope.changes, the policy's rule
    for `_history`: the entry was in the caller's view at that change, or left it then) and the
    entry is no longer in that view: deleted, delisted or withdrawn for an anonymous caller, its
    structure so... An entry the caller never saw is never named, not even by its id."""
    since = job.request.since
    assert since is not None
    c = change_log.c
    listed, _ = scope.changes(job.request.types, change_log)
    out = _Files(folder, "deleted", "Bundle", "deleted", services.settings.export_file_lines)
    for res_type in job.request.types:
        in_view = and_(true(), *services.search.conditions_for(conn, res_type, [], scope))
        query = (
            select(resource.c.res_type, resource.c.res_id, resource.c.last_updated)
            .where(
                resource.c.res_type == res_type,
                resource.c.rid.in_(select(c.rid).where(c.at >= since, c.res_type == res_type, listed)),
                or_(resource.c.deleted == true(), not_(in_view)),
            )
            .order_by(resource.c.rid)
        )
        for found_type, res_id, when in conn.execute(query, execution_options=_STREAMED):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "meta": {"lastUpdated": format_instant(when)},
                "entry": [{"request": {"method": "DELETE", "url": f"{found_type}/{res_id}"}}],
            }
            out.write(dumps(bundle).encode())
    return out.close()


def _issues(folder: Path, job: ExportJob) -> list[ExportFile]:
    """What lenient handling ignored, as one OperationOutcome in the manifest's `error` array."""
    out = _Files(folder, "error", "OperationOutcome", "errors", 1)
    out.write(
        dumps(
            {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in job.request.issues]}
        ).encode()
    )
    return out.close()
