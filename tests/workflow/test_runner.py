"""The background runner of `fhirsrv serve`: one pass at a time across the server's processes."""

from __future__ import annotations

from datetime import datetime, timedelta

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.wiring import build_services
from fhirsrv.workflow import runner
from tests.workflow.test_sweep import VERIFIED, _structure


def test_a_pass_is_skipped_while_another_process_runs_one_then_runs(db_url: str) -> None:
    services = build_services(Settings.from_env(database_url=db_url, load_demo=False))
    with services.engine.begin() as conn:
        writes.create(services, conn, _structure("org-a"), "org-a", actor=SERVER)
    # Verified long enough ago that a sweep asks for a new verification.
    assert datetime.fromisoformat(VERIFIED) + timedelta(days=365) < datetime.now()
    # Another process's pass holds the runner's lock (the same lock, taken the same way).
    with one_at_a_time(services.engine, runner.LOCK_NAME, runner.LOCK_KEY) as theirs:
        assert theirs is True
        assert runner.run_pass(services) is None
    report = runner.run_pass(services)
    assert report is not None and report.examined == 1 and report.requested == 1
    services.engine.dispose()
