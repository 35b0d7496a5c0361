"""The procedure's background work run inside `fhirsrv serve` (FHIRSRV_SWEEP_INTERVAL_SECONDS):
the yearly-verification sweep, then one delivery pass of the outbox. A daemon thread in each
process of the server (each worker of `serve --workers N`); a database lock (storage/locks.py)
lets one pass run at a time across all of them, the others skip their turn. The sweep keeps
its own lock besides, against a `fhirsrv sweep` started from cron meanwhile."""

from __future__ import annotations

import logging
import threading

from fhirsrv.canonical import Canonicals
from fhirsrv.interactions.context import Services
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.workflow import outbox
from fhirsrv.workflow.lifecycle import Lifecycle
from fhirsrv.workflow.mail import Mailer
from fhirsrv.workflow.procedure import Procedure
from fhirsrv.workflow.sweep import SweepReport, sweep

log = logging.getLogger("fhirsrv.workflow")
# The runner's lock: its PostgreSQL advisory key (the sweep's is 7414) and its SQLite lock file.
LOCK_KEY = 7_415
LOCK_NAME = "runner"


def procedure(services: Services) -> Procedure:
    return Procedure(services, Lifecycle(Canonicals(services.settings.canonical_base)))


def run_once(services: Services) -> SweepReport:
    report = sweep(services, procedure(services), utcnow())
    if services.settings.smtp_host:
        outbox.deliver_due(services.engine, Mailer.from_settings(services.settings), services.settings)
    return report


def run_pass(services: Services) -> SweepReport | None:
    """One pass of the background work, or None when another process of the deployment is
    running one (it does the work: this one waits for its next turn)."""
    with one_at_a_time(services.engine, LOCK_NAME, LOCK_KEY) as mine:
        return run_once(services) if mine else None


def start(services: Services) -> threading.Thread | None:
    interval = services.settings.sweep_interval_seconds
    if interval <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                report = run_pass(services)
                if report is None:
                    continue
                log.info(
                    "sweep: %s examined, %s asked to verify, %s reminded, %s delisted",
                    report.examined, report.requested, report.second_reminders, report.delisted,
                )  # fmt: skip
            except Exception:  # the loop outlives a bad pass; the next one retries
                log.exception("sweep pass failed")

    thread = threading.Thread(target=loop, name="fhirsrv-sweep", daemon=True)
    thread.start()
    return thread
