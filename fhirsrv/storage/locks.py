"""One holder at a time across every process of a deployment: a try-lock, never a wait.

Background work that several processes may start (the sweep from cron and from each worker
process of `fhirsrv serve --workers N`, the runner's delivery pass) takes one of these: the
process that gets it does the work, the others skip their turn rather than queue.

- PostgreSQL: a session advisory lock, keyed by the lock's number and the schema (an advisory
  lock is database-wide, and two directories may share a database in different schemas).
- SQLite (a file): an exclusive `flock` on a file beside the database, `<database>.<name>.lock`.
  SQLite is one machine's database, and the kernel releases the lock when its holder exits,
  however it ends (kill -9 included): no lease to expire, no row left behind by a crash.
- SQLite in memory: one process only, so a lock of this process.

Either way the lock is released when the block ends or its process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

# In-memory SQLite databases: one lock per engine and name, within this process.
_MEMORY_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


@contextlib.contextmanager
def one_at_a_time(engine: Engine, name: str, key: int) -> Iterator[bool]:
    """Yields True when this process holds the lock `name` (PostgreSQL: advisory lock `key`) for
    the block, False when another holder has it (then do nothing)."""
    if engine.dialect.name == "postgresql":
        with _advisory(engine, key) as got:
            yield got
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _in_process(engine, name) as got:
            yield got
        return
    with _file_lock(Path(f"{database}.{name}.lock")) as got:
        yield got


@contextlib.contextmanager
def _advisory(engine: Engine, key: int) -> Iterator[bool]:
    with engine.connect() as conn:
        got = bool(
            conn.execute(
                text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"), {"k": key}
            ).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"), {"k": key})
                conn.commit()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    # The file stays (removing it while another process opens it would let two hold "the" lock).
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _in_process(engine: Engine, name: str) -> Iterator[bool]:
    with _MEMORY_GUARD:
        lock = _MEMORY_LOCKS.setdefault((id(engine), name), threading.Lock())
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextlib.contextmanager
def exclusively(engine: Engine, name: str, key: int) -> Iterator[None]:
    """Hold the lock `name` (PostgreSQL: advisory lock `key`) for the block, waiting for the
    holder to finish first: for work that every process must see done, once (a schema upgrade
    that two containers start together), rather than work the others may skip."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k, hashtext(current_schema()))"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"), {"k": key})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _MEMORY_GUARD:
            lock = _MEMORY_LOCKS.setdefault((id(engine), name), threading.Lock())
        with lock:
            yield
        return
    fd = os.open(Path(f"{database}.{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
