"""The export worker: one process at a time works the jobs, resumes what a dead one left, gives
up on a job that keeps killing its process, and says why a job failed. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions.context import Services
from fhirsrv.settings import Settings
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.sync import export_jobs as jobs
from fhirsrv.sync.export_request import ExportRequest
from fhirsrv.sync.export_runner import LOCK_KEY, LOCK_NAME, ExportWorker
from fhirsrv.sync.export_tables import export_job
from fhirsrv.wiring import build_services

KICK_OFF = "http://fhir.test/fhir/$export"


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    built = build_services(
        Settings.from_env(database_url=db_url, load_demo=False, export_dir=tmp_path / "exports")
    )
    yield built
    built.engine.dispose()


def _queue(services: Services, *types: str) -> jobs.ExportJob:
    return jobs.create(
        services.engine, services.settings, SERVER, KICK_OFF, ExportRequest(types or ("Organization",))
    )


def _status(services: Services, job: jobs.ExportJob) -> str:
    found = jobs.get(services.engine, job.id)
    assert found is not None
    return found.status


def test_a_pass_is_skipped_while_another_process_works_then_runs(services: Services) -> None:
    job = _queue(services)
    worker = ExportWorker(services)
    with one_at_a_time(services.engine, LOCK_NAME, LOCK_KEY) as theirs:
        assert theirs is True
        assert worker.run_pass() is False
        assert _status(services, job) == jobs.QUEUED
    assert worker.run_pass() is True
    assert _status(services, job) == jobs.DONE


def test_a_job_that_keeps_killing_its_process_is_failed(services: Services) -> None:
    job = _queue(services)
    with services.engine.begin() as conn:
        conn.execute(update(export_job).values(status=jobs.RUNNING, attempts=jobs.MAX_ATTEMPTS))
    assert ExportWorker(services).run_pass() is True
    found = jobs.get(services.engine, job.id)
    assert found is not None and found.status == jobs.FAILED
    assert found.error is not None and "interrupted 3 times" in found.error


def test_a_job_cancelled_as_it_starts_leaves_no_file(services: Services) -> None:
    job = _queue(services)
    claimed = jobs.claim_next(services.engine)
    assert claimed is not None and claimed.id == job.id
    jobs.cancel(services.engine, job.id)  # the client's DELETE, while the worker holds the job
    ExportWorker(services)._work(claimed)
    assert not jobs.job_dir(services.settings, job.id).exists()
    assert _status(services, job) == jobs.CANCELLED
    ExportWorker(services).run_pass()
    assert jobs.get(services.engine, job.id) is None


def test_a_job_that_cannot_write_its_files_fails_and_says_why(services: Services, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    settings = services.settings.overridden(export_dir=blocked)
    services.settings = settings
    job = _queue(services)
    assert ExportWorker(services).run_pass() is True
    found = jobs.get(services.engine, job.id)
    assert found is not None and found.status == jobs.FAILED
    assert found.error is not None and "export directory" in found.error


def test_the_worker_thread_works_what_it_is_woken_for_then_ends(services: Services) -> None:
    job = _queue(services)
    worker = ExportWorker(services)
    worker.wake()
    worker.join(60)
    assert _status(services, job) == jobs.DONE
