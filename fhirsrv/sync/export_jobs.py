"""The `$export` jobs: their rows (export_tables.py), who may see them, and their lifecycle.

    kick-off -> queued -> running -> done     (manifest, files)       -> expired: gone
                  |          |    -> failed   (OperationOutcome)      -> expired: gone
                  +----------+--> cancelled   (DELETE: gone at once; files removed)

A job belongs to the caller that started it, as its token said at the kick-off (client id,
role, scopes, territory): the export runs as that caller, and its status and files are served
to that caller only. Another client gets 404, as for an id that never existed, and an
anonymous caller 401 (it may have forgotten its token). A job started anonymously (only when
FHIRSRV_EXPORT_ANONYMOUS allows it) holds the public view only, and its URLs, which carry 128
random bits, are all it takes to read it, as `requiresAccessToken: false` says.

Expired, failed and cancelled jobs are removed with their files by the export worker
(export_runner.py), which holds the export lock while it does: no process is writing them then.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, insert, or_, select, update

from fhirsrv.access.policy import unauthorized
from fhirsrv.access.principal import ANONYMOUS, SERVER, Principal, Role
from fhirsrv.errors import NotFound, TooManyRequests
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import dumps, loads, utcnow
from fhirsrv.sync.export_request import ExportRequest
from fhirsrv.sync.export_tables import export_job

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
# A job's time to live runs from its end: a long export is not lost while it runs or waits.
ENDED = (DONE, FAILED)
# Jobs one caller may have queued or running at once (an anonymous caller: per address): each
# one is a scan of the directory and a copy of it on disk. More: 429, retry once one is done.
MAX_ACTIVE_PER_CALLER = 4
# Seconds a client is told to wait before asking again (Retry-After) while a job runs.
RETRY_AFTER_SECONDS = 2
# A job whose process died this many times while working it (killed, out of memory) is failed
# rather than retried at every restart.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ExportFile:
    """One file of a finished job: `kind` output, error (OperationOutcome) or deleted (Bundle)."""

    kind: str
    res_type: str
    name: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": self.res_type, "name": self.name, "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportFile:
        return cls(data["kind"], data["type"], data["name"], int(data["count"]))


@dataclass(frozen=True)
class ExportJob:
    id: str
    status: str
    owner: str
    principal: Principal
    request_url: str
    request: ExportRequest
    created: datetime
    expires: datetime
    attempts: int = 0
    started: datetime | None = None
    finished: datetime | None = None
    transaction_time: datetime | None = None
    progress: str | None = None
    files: tuple[ExportFile, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def requires_token(self) -> bool:
        """Whether its status and files need the owner's token (all but anonymous jobs and
        those of a server running without authorization)."""
        return self.principal.role not in (Role.ANONYMOUS, Role.SERVER)

    def file(self, name: str) -> ExportFile | None:
        return next((f for f in self.files if f.name == name), None)


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.export_dir / job_id


# ----------------------------------------------------------------------------- principals
def principal_to_json(principal: Principal) -> str:
    """What the export needs to run as the caller: no display name (an administrator may have
    named a client after a person) and no address."""
    return dumps(
        {
            "role": str(principal.role),
            "client_id": principal.client_id,
            "scope": principal.scope,
            "departements": list(principal.departements),
            "organization": principal.organization,
            "kind": principal.kind,
            "communes": list(principal.communes),
        }
    )


def principal_from_json(text: str) -> Principal:
    data = loads(text)
    role = Role(data["role"])
    if role is Role.ANONYMOUS:
        return ANONYMOUS
    if role is Role.SERVER:
        return SERVER
    return Principal.client(
        role=data["role"],
        client_id=data["client_id"],
        name="",
        scope=data["scope"],
        departements=tuple(data.get("departements") or ()),
        organization=data.get("organization"),
        kind=data.get("kind"),
        communes=tuple(data.get("communes") or ()),
    )


def _job(row: Any) -> ExportJob:
    files = tuple(ExportFile.from_json(f) for f in loads(row.outputs)) if row.outputs else ()
    return ExportJob(
        id=row.id,
        status=row.status,
        owner=row.owner,
        principal=principal_from_json(row.principal),
        request_url=row.request,
        request=ExportRequest.from_json(loads(row.parameters)),
        created=row.created,
        expires=row.expires,
        attempts=row.attempts,
        started=row.started,
        finished=row.finished,
        transaction_time=row.transaction_time,
        progress=row.progress,
        files=files,
        error=row.error,
    )


# ------------------------------------------------------------------------------ kick-off
def create(
    engine: Engine, settings: Settings, principal: Principal, request_url: str, request: ExportRequest
) -> ExportJob:
    """A queued job for `principal`; 429 when the caller already has as many as it may."""
    now = utcnow()
    job_id = secrets.token_hex(16)
    with write_transaction(engine) as conn:
        if principal.role is not Role.SERVER:
            mine = export_job.c.owner == principal.client_id
            if principal.is_anonymous:
                mine = mine & (export_job.c.address == principal.address)
            active = conn.execute(
                select(func.count()).select_from(export_job).where(mine, export_job.c.status.in_(ACTIVE))
            ).scalar_one()
            if active >= MAX_ACTIVE_PER_CALLER:
                raise TooManyRequests(
                    f"This caller already has {active} exports queued or running (at most "
                    f"{MAX_ACTIVE_PER_CALLER}): retry once one is done",
                    headers={"Retry-After": "60"},
                )
        conn.execute(
            insert(export_job).values(
                id=job_id,
                status=QUEUED,
                owner=principal.client_id,
                principal=principal_to_json(principal),
                address=principal.address,
                request=request_url,
                parameters=dumps(request.to_json()),
                created=now,
                expires=now + timedelta(seconds=settings.export_ttl_seconds),
                attempts=0,
            )
        )
    found = get(engine, job_id)
    assert found is not None
    return found


def get(engine: Engine, job_id: str) -> ExportJob | None:
    with engine.connect() as conn:
        row = conn.execute(select(export_job).where(export_job.c.id == job_id[:64])).first()
    return _job(row) if row is not None else None


def for_caller(engine: Engine, job_id: str, caller: Principal) -> ExportJob:
    """The job `job_id` as `caller` may see it: 404 when it does not exist, has expired, was
    cancelled, or belongs to another client (the same answer, so a job id tells nothing);
    401 to an anonymous caller for a job that needs a token."""
    job = get(engine, job_id)
    if job is None or job.status == CANCELLED or (job.status in ENDED and job.expires <= utcnow()):
        raise NotFound("No such export job (it may have expired or been cancelled)")
    if job.requires_token:
        if caller.is_anonymous:
            raise unauthorized("This export job's status and files need the access token that started it")
        if caller.client_id != job.owner or caller.role is Role.SERVER:
            raise NotFound("No such export job (it may have expired or been cancelled)")
    return job


def cancel(engine: Engine, job_id: str) -> None:
    """The job is gone for its client at once; its files are removed by the worker, which may
    be writing them (it notices at its next chunk), or at once when no job is running."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(export_job).where(export_job.c.id == job_id).values(status=CANCELLED, progress=None)
        )


# ------------------------------------------------------------------------------ the worker
def claim_next(engine: Engine) -> ExportJob | None:
    """The oldest queued job, or a job left `running` by a process that died (whoever calls
    this holds the export lock, so no live process works it), marked running. A job that was
    interrupted MAX_ATTEMPTS times is failed instead."""
    while True:
        with write_transaction(engine) as conn:
            row = conn.execute(
                select(export_job)
                .where(export_job.c.status.in_(ACTIVE))
                .order_by(export_job.c.created, export_job.c.id)
                .limit(1)
            ).first()
            if row is None:
                return None
            now = utcnow()
            if row.attempts >= MAX_ATTEMPTS:
                conn.execute(
                    update(export_job)
                    .where(export_job.c.id == row.id)
                    .values(
                        status=FAILED,
                        finished=now,
                        progress=None,
                        error=f"The export was interrupted {row.attempts} times (the server stopped while "
                        "writing it); start it again",
                    )
                )
                continue
            conn.execute(
                update(export_job)
                .where(export_job.c.id == row.id)
                .values(status=RUNNING, started=now, attempts=row.attempts + 1, progress="starting")
            )
        found = get(engine, row.id)
        if found is not None and found.status == RUNNING:
            return found


def report_progress(engine: Engine, job_id: str, progress: str) -> bool:
    """Record the running job's progress; False when it is no longer running (cancelled)."""
    with write_transaction(engine) as conn:
        changed = conn.execute(
            update(export_job)
            .where(export_job.c.id == job_id, export_job.c.status == RUNNING)
            .values(progress=progress[:200])
        ).rowcount
    return changed == 1


def finish(
    engine: Engine, settings: Settings, job_id: str, transaction_time: datetime, files: list[ExportFile]
) -> bool:
    """Done, with its files; its time to live starts now. False when it was cancelled meanwhile."""
    now = utcnow()
    with write_transaction(engine) as conn:
        changed = conn.execute(
            update(export_job)
            .where(export_job.c.id == job_id, export_job.c.status == RUNNING)
            .values(
                status=DONE,
                finished=now,
                expires=now + timedelta(seconds=settings.export_ttl_seconds),
                transaction_time=transaction_time,
                progress=None,
                outputs=orjson.dumps([f.to_json() for f in files]).decode(),
            )
        ).rowcount
    return changed == 1


def fail(engine: Engine, settings: Settings, job_id: str, reason: str) -> None:
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(
            update(export_job)
            .where(export_job.c.id == job_id, export_job.c.status == RUNNING)
            .values(
                status=FAILED,
                finished=now,
                expires=now + timedelta(seconds=settings.export_ttl_seconds),
                progress=None,
                error=reason[:2000],
            )
        )


def housekeeping(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Remove cancelled jobs, and ended jobs past their time to live, with their files. Only
    under the export lock (export_runner.py): no process is writing them then. Returns how
    many jobs were removed."""
    now = now or utcnow()
    with engine.connect() as conn:
        gone = [
            job_id
            for (job_id,) in conn.execute(
                select(export_job.c.id).where(
                    or_(
                        export_job.c.status == CANCELLED,
                        (export_job.c.expires <= now) & export_job.c.status.in_(ENDED),
                    )
                )
            )
        ]
    for job_id in gone:
        shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
        with write_transaction(engine) as conn:
            conn.execute(
                delete(export_job).where(export_job.c.id == job_id, export_job.c.status.not_in(ACTIVE))
            )
    return len(gone)
