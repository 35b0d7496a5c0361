"""The yearly verification: `fhirsrv sweep`, safe from cron every hour and from two processes.

- a published structure whose last verification is older than `verify_after_days` goes to
  verification-pending and its referent gets a reminder;
- still pending `second_reminder_days` later: a second reminder;
- still pending `delist_after_days` after the request: delisted, with its entries, and the
  referent and the territorial administrators are told.
`$attest` (the referent: "my entry is still right") puts it back to published with a new date.

Running it twice moves nothing twice and sends nothing twice: a transition starts only from its
source status, at the version read (an entry changed meanwhile is left for the next run), and
each message has a key the outbox stores once. One sweep runs at a time, whatever process
started it (storage/locks.py: an advisory lock on PostgreSQL, a file lock beside the SQLite
database); another finds it running and does nothing. Structures are read in batches in id
order: memory stays constant however large the directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from fhirsrv.access.principal import SERVER
from fhirsrv.errors import FhirError
from fhirsrv.interactions.context import Services
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.storage.schema import entry_access, live, resource
from fhirsrv.workflow.procedure import Procedure

log = logging.getLogger("fhirsrv.sweep")
BATCH = 500
LOCK_KEY = 7_414  # the sweep's PostgreSQL advisory lock (with the schema's hash)
LOCK_NAME = "sweep"  # its lock file beside a SQLite database


@dataclass
class SweepReport:
    examined: int = 0
    requested: int = 0
    second_reminders: int = 0
    delisted: int = 0
    skipped: int = 0  # changed meanwhile, or refused: left for the next run
    locked: bool = False  # another sweep was running: this one did nothing
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)


def sweep(services: Services, procedure: Procedure, now: datetime) -> SweepReport:
    import time

    start = time.perf_counter()
    report = SweepReport()
    settings = services.settings
    with one_at_a_time(services.engine, LOCK_NAME, LOCK_KEY) as mine:
        if not mine:
            report.locked = True
            return report
        stale = (now - timedelta(days=settings.verify_after_days)).date()
        second = (now - timedelta(days=settings.second_reminder_days)).date()
        delist = (now - timedelta(days=settings.delist_after_days)).date()
        for batch in _structures(services.engine, ("published", "verification-pending")):
            for _rid, org_id, version, content in batch:
                report.examined += 1
                org = loads(content)
                status = procedure.lifecycle.status(org)
                if status == "published":
                    verified = _date(procedure.lifecycle.get(org, "lastVerified"))
                    if verified is None or verified < stale:
                        _move(services, procedure, org_id, version, "request-verification", now, report)
                elif status == "verification-pending":
                    requested = _date(procedure.lifecycle.get(org, "verificationRequested"))
                    if requested is None:  # asked before the request was recorded: a year after the check
                        verified = _date(procedure.lifecycle.get(org, "lastVerified"))
                        if verified is None:
                            continue
                        requested = verified + timedelta(days=settings.verify_after_days)
                    if requested <= delist:
                        _move(services, procedure, org_id, version, "delist", now, report)
                    elif requested <= second:
                        _second_reminder(services, procedure, org_id, org, requested, now, report)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _structures(engine: Engine, statuses: tuple[str, ...]) -> Iterator[list[tuple[int, str, int, str]]]:
    """Structures in these statuses, in batches by rid (keyset), each batch its own snapshot."""
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(resource.c.rid, resource.c.res_id, resource.c.version_id, resource.c.content)
                .join(entry_access, entry_access.c.rid == resource.c.rid)
                .where(
                    entry_access.c.res_type == "Organization",
                    entry_access.c.status.in_(statuses),
                    live(resource),
                    resource.c.rid > after,
                )
                .order_by(resource.c.rid)
                .limit(BATCH)
            ).all()
        if not rows:
            return
        yield [(r.rid, r.res_id, r.version_id, r.content) for r in rows]
        after = rows[-1].rid


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _move(
    services: Services, procedure: Procedure, org_id: str, version: int, name: str, now: datetime, report: SweepReport
) -> None:
    try:
        with write_transaction(services.engine) as conn:
            stored = procedure.apply(conn, SERVER, org_id, name, now, expected_version=version)
            if name == "request-verification":
                _reminder(conn, procedure, org_id, loads(stored.content or "{}"), now.date(), "verification-reminder", services)
    except FhirError as exc:
        report.skipped += 1
        # Status and issue codes only: a refused write's diagnostics may quote the entry's values.
        codes = ",".join(issue.code for issue in exc.issues)
        log.info("sweep: Organization/%s left for the next run (%s %s)", org_id, exc.status, codes)
        return
    if name == "request-verification":
        report.requested += 1
    else:
        report.delisted += 1


def _reminder(
    conn: Connection,
    procedure: Procedure,
    org_id: str,
    org: dict[str, Any],
    requested: date,
    template: str,
    services: Services,
) -> bool:
    delisting = requested + timedelta(days=services.settings.delist_after_days)
    return procedure.message(
        conn,
        template,
        ("referent",),
        org_id,
        org,
        {"delisting_date": delisting.strftime("%d/%m/%Y")},
        f"{template}:{org_id}:{requested.isoformat()}",
    )


def _second_reminder(
    services: Services,
    procedure: Procedure,
    org_id: str,
    org: dict[str, Any],
    requested: date,
    now: datetime,
    report: SweepReport,
) -> None:
    with write_transaction(services.engine) as conn:
        if _reminder(conn, procedure, org_id, org, requested, "verification-reminder-2", services):
            report.second_reminders += 1
