"""One holder at a time across processes (storage/locks.py), on each back-end, with real
processes: the worker processes of `fhirsrv serve --workers N` and a cron job rely on it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine

from fhirsrv.storage.locks import one_at_a_time

NAME, KEY = "test", 424_242
# Takes the lock in a process of its own, says whether it got it, and holds it until killed.
HOLDER = """
import sys, time
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.locks import one_at_a_time
with one_at_a_time(make_engine(sys.argv[1]), sys.argv[2], int(sys.argv[3])) as mine:
    print("held" if mine else "busy", flush=True)
    time.sleep(600 if mine else 0)
"""
# A bound on waiting for the database to notice a killed holder, not a measure of anything.
RELEASE_DEADLINE = 30.0


@contextmanager
def _holder(db_url: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url, NAME, str(KEY)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _free_again(engine: Engine) -> bool:
    deadline = time.monotonic() + RELEASE_DEADLINE
    while time.monotonic() < deadline:
        with one_at_a_time(engine, NAME, KEY) as mine:
            if mine:
                return True
        time.sleep(0.2)
    return False


def test_a_lock_held_by_another_process_is_refused_then_free_when_it_is_killed(db_url: str, engine: Engine) -> None:
    with _holder(db_url) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with one_at_a_time(engine, NAME, KEY) as mine:
            assert mine is False
        # Another name (another piece of work) is not held.
        with one_at_a_time(engine, "other", KEY + 1) as mine:
            assert mine is True
        holder.kill()  # as a crash would: no unlock, no cleanup
        holder.wait(timeout=10)
    assert _free_again(engine)


def test_while_this_process_holds_it_another_process_is_refused(db_url: str, engine: Engine) -> None:
    with one_at_a_time(engine, NAME, KEY) as mine:
        assert mine is True
        done = subprocess.run(
            [sys.executable, "-c", HOLDER, db_url, NAME, str(KEY)], capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "busy", done.stderr
    # Released at the end of the block: taken again at once.
    with one_at_a_time(engine, NAME, KEY) as mine:
        assert mine is True


def test_two_threads_of_one_process_exclude_each_other_too(engine: Engine) -> None:
    seen: list[bool] = []
    with one_at_a_time(engine, NAME, KEY) as mine:
        thread = threading.Thread(target=lambda: seen.append(_try(engine)))
        thread.start()
        thread.join()
    assert mine is True and seen == [False]


def test_an_in_memory_database_locks_within_its_process() -> None:
    engine = create_engine("sqlite://")
    with one_at_a_time(engine, NAME, KEY) as mine:
        assert mine is True and _try(engine) is False
    assert _try(engine) is True
    engine.dispose()


def _try(engine: Engine) -> bool:
    with one_at_a_time(engine, NAME, KEY) as mine:
        return mine


def test_every_lock_of_the_server_has_its_own_postgresql_key() -> None:
    """Two locks sharing an advisory key exclude each other's work: the export worker once
    shared the change log's, and every write waited for a running export to end."""
    from fhirsrv import cli_db
    from fhirsrv.interactions import identifiers, load, reindex
    from fhirsrv.storage import changes
    from fhirsrv.sync import delivery, export_runner
    from fhirsrv.workflow import runner, sweep

    keys = {
        "change log": changes.LOCK_KEY,
        "export": export_runner.LOCK_KEY,
        "subscription delivery": delivery.LOCK_KEY,
        "procedure runner": runner.LOCK_KEY,
        "sweep": sweep.LOCK_KEY,
        "db upgrade": cli_db.UPGRADE_LOCK_KEY,
        "identifier fill": identifiers.FILL_LOCK_KEY,
        "reindex": reindex.REINDEX_LOCK_KEY,
        "first load": load.FIRST_LOAD_LOCK_KEY,
    }
    shared = {k: [n for n, v in keys.items() if v == k] for k in keys.values()}
    assert {k: names for k, names in shared.items() if len(names) > 1} == {}
