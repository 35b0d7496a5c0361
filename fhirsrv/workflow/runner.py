"""The procedure's background work run inside `fhirsrv serve` (FHIRSRV_SWEEP_INTERVAL_SECONDS):
the yearly-verification sweep, then one delivery pass of the outbox. A daemon thread; the
sweep's own lock keeps two processes from sweeping at once."""

from __future__ import annotations

import logging
import threading

from fhirsrv.canonical import Canonicals
from fhirsrv.interactions.context import Services
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.workflow import outbox
from fhirsrv.workflow.lifecycle import Lifecycle
from fhirsrv.workflow.mail import Mailer
from fhirsrv.workflow.procedure import Procedure
from fhirsrv.workflow.sweep import SweepReport, sweep

log = logging.getLogger("fhirsrv.workflow")


def procedure(services: Services) -> Procedure:
    return Procedure(services, Lifecycle(Canonicals(services.settings.canonical_base)))


def run_once(services: Services) -> SweepReport:
    report = sweep(services, procedure(services), utcnow())
    if services.settings.smtp_host:
        outbox.deliver_due(services.engine, Mailer.from_settings(services.settings), services.settings)
    return report


def start(services: Services) -> threading.Thread | None:
    interval = services.settings.sweep_interval_seconds
    if interval <= 0:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                report = run_once(services)
                log.info(
                    "sweep: %s examined, %s asked to verify, %s reminded, %s delisted",
                    report.examined, report.requested, report.second_reminders, report.delisted,
                )  # fmt: skip
            except Exception:  # the loop outlives a bad pass; the next one retries
                log.exception("sweep pass failed")

    thread = threading.Thread(target=loop, name="fhirsrv-sweep", daemon=True)
    thread.start()
    return thread
