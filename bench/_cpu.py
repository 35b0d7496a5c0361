"""Where a run's CPU went: this process, its reaped children, and the PostgreSQL backends it used.

On two cores a bulk load is bounded by the CPU of everything it sets working: the parent that
writes, the worker processes that prepare, and the PostgreSQL backends that store and index.
Wall time alone cannot say which to cut; these three can. The backends are found by their
`application_name` and read in /proc, so the PostgreSQL figure needs the server on this host
(it is None otherwise)."""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process on this host, None if it is not here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSplit:
    parent_s: float
    workers_s: float
    postgresql_s: float | None

    def per_resource_ms(self, count: int) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds / count * 1000, 3)

        total = self.parent_s + self.workers_s + (self.postgresql_s or 0.0)
        return {
            "parent": ms(self.parent_s),
            "worker_processes": ms(self.workers_s),
            "postgresql_backends": ms(self.postgresql_s),
            "total": ms(total),
        }


class CpuMeter:
    """Use as a context manager around the run; `split` is set on exit. Children must have
    been reaped by then (the load's pool is closed when it returns)."""

    def __init__(self, postgres_url: str | None, application_name: str) -> None:
        self.postgres_url = postgres_url
        self.application_name = application_name
        self.split: CpuSplit | None = None
        self._backends: dict[int, float] = {}
        self._before: dict[int, float] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _look(self, conn: Any, into: dict[int, float]) -> None:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
        ).fetchall()
        for (pid,) in rows:
            seen = _process_cpu(pid)
            if seen is not None:
                into[pid] = seen

    def _watch(self, conn: Any) -> None:
        with conn:
            while not self._stop.wait(0.2):
                self._look(conn, self._backends)
            self._look(conn, self._backends)

    def __enter__(self) -> CpuMeter:
        self._start = (time.process_time(), _children_cpu())
        if self.postgres_url:
            import psycopg

            conn = psycopg.connect(self.postgres_url, autocommit=True)
            self._look(conn, self._before)  # backends already open: only what they do from now
            self._watcher = threading.Thread(target=self._watch, args=(conn,), name="cpu-meter", daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        parent = time.process_time() - self._start[0]
        workers = _children_cpu() - self._start[1]
        backends = None
        if self._watcher is not None:
            self._stop.set()
            self._watcher.join()
            backends = sum(cpu - self._before.get(pid, 0.0) for pid, cpu in self._backends.items())
        self.split = CpuSplit(parent, workers, backends)


def with_application_name(url: str, name: str) -> str:
    """`url` whose connections name themselves `name` in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"
