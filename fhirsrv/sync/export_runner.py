"""The export worker: a background thread of each server process that works the queued jobs.

Jobs are rows (export_tables.py), so any process may work any job, and one accepted by a
process that stopped since is worked by the next one that looks. A database lock
(storage/locks.py, like the sweep's runner) lets one process at a time work jobs, one job at a
time: an export reads the whole directory, and several at once would only share the same
disk and database between them. The others skip their turn. Holding the lock also means no
job is being written by anyone else, so a job found `running` was left so by a process that
died: it is started again from the beginning.

When does a process look?
- when a job is kicked off, and whenever a client polls a job that is not finished (so a
  restarted server resumes its jobs at the first poll, whatever process answers it);
- in `fhirsrv serve`, also at start and every IDLE_SECONDS (`keep_running`): jobs a stopped
  process left are resumed, and expired jobs' files removed, even when nobody polls.
A process that is not serving (a test's app, a command) keeps no thread when there is no work.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

from fhirsrv.errors import FhirError
from fhirsrv.interactions.context import Services
from fhirsrv.storage.faults import unavailability
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.sync import export_jobs as jobs
from fhirsrv.sync.export_writer import Cancelled, write_export

log = logging.getLogger("fhirsrv.export")
# The export lock: its PostgreSQL advisory key and its SQLite lock file (`<database>.export.lock`).
# Each lock of the server has its own key (tests/storage/test_locks.py): the change log's is
# 7416, which every write takes at its commit, so an export under that key stopped every write.
LOCK_KEY = 7_417
LOCK_NAME = "export"
# How often a serving process looks for work nobody announced, and for expired jobs.
IDLE_SECONDS = 60.0
# How long a cancellation waits for a pass that holds the export lock to end, and how often it
# looks (`ExportWorker.tidy_now`).
TIDY_WAIT_SECONDS = 2.0
TIDY_RETRY_SECONDS = 0.05


class ExportWorker:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._guard = threading.Lock()
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._persistent = False

    def wake(self) -> None:
        """Look for work soon: now, in a new thread, or after the current job."""
        with self._guard:
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="fhirsrv-export", daemon=True)
                self._thread.start()

    def keep_running(self) -> None:
        """For `fhirsrv serve`: keep looking every IDLE_SECONDS, starting now."""
        self._persistent = True
        self.wake()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the work in hand to end (a process about to stop, or a test's teardown)."""
        with self._guard:
            thread = self._thread
        if thread is not None and not self._persistent:
            thread.join(timeout)

    def run_pass(self) -> bool:
        """Remove expired and cancelled jobs, then work every queued job. False when another
        process holds the export lock (it does the work: this one skips its turn)."""
        services = self.services
        with one_at_a_time(services.engine, LOCK_NAME, LOCK_KEY) as mine:
            if not mine:
                return False
            jobs.housekeeping(services.engine, services.settings)
            while (job := jobs.claim_next(services.engine)) is not None:
                self._work(job)
                # Jobs cancelled while this one ran, whose files waited for the lock.
                jobs.housekeeping(services.engine, services.settings)
            return True

    def tidy_now(self) -> None:
        """Remove cancelled and expired jobs' files now (a DELETE of a job's status answers that
        its files are removed). The export lock may be held by a pass that is ending: a job
        just finished, its manifest already served, the pass's last look for work under way; it
        is waited for, TIDY_WAIT_SECONDS at most (it had tidied before the job was cancelled).
        A pass still writing a job after that removes the files when the job ends; this
        process's worker looks again after its pass (`wake`)."""
        services = self.services
        deadline = time.monotonic() + TIDY_WAIT_SECONDS
        while True:
            with one_at_a_time(services.engine, LOCK_NAME, LOCK_KEY) as mine:
                if mine:
                    jobs.housekeeping(services.engine, services.settings)
                    return
            if time.monotonic() >= deadline:
                self.wake()
                return
            time.sleep(TIDY_RETRY_SECONDS)

    def _loop(self) -> None:
        while True:
            self._wanted.clear()
            try:
                self.run_pass()
            except Exception as exc:  # the thread outlives a bad pass: the next one retries
                fault = unavailability(exc)
                if fault is None:
                    log.exception("export pass failed")
                else:  # an outage is not a bug: one line, as a request's 503 logs it
                    log.warning("export pass skipped: %s", fault.reason)
            if self._persistent:
                self._wanted.wait(IDLE_SECONDS)
                continue
            with self._guard:
                if not self._wanted.is_set():
                    self._thread = None
                    return

    def _work(self, job: jobs.ExportJob) -> None:
        services = self.services
        engine, settings = services.engine, services.settings
        folder = jobs.job_dir(settings, job.id)
        shutil.rmtree(folder, ignore_errors=True)  # what an interrupted attempt left
        started = time.perf_counter()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            when, files = write_export(
                services, job, folder, lambda text: jobs.report_progress(engine, job.id, text)
            )
        except Cancelled:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("export %s cancelled while running", job.id)
            return
        except Exception as exc:
            shutil.rmtree(folder, ignore_errors=True)
            jobs.fail(engine, settings, job.id, _reason(exc))
            log.exception("export %s failed", job.id)
            return
        if not jobs.finish(engine, settings, job.id, when, files):
            shutil.rmtree(folder, ignore_errors=True)  # cancelled as it ended
            return
        log.info(
            "export %s done: %s resources in %s files, %.1f s",
            job.id, sum(f.count for f in files if f.kind == "output"), len(files), time.perf_counter() - started,
        )  # fmt: skip


def _reason(exc: Exception) -> str:
    """What the client is told: a request's own error as the server would answer it, else a
    fixed sentence; never a driver's message, which may quote stored values."""
    if isinstance(exc, FhirError):
        return exc.diagnostics
    fault = unavailability(exc)
    if fault is not None:
        return f"The export stopped: {fault.reason}; start it again"
    if isinstance(exc, OSError):
        return "The export could not write its files (the export directory is full or not writable); start it again"
    return "The export failed on an unexpected error; start it again"
