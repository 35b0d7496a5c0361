"""A fhirsrv app plus the fixed-bytes route, for bench/workers_bench.py, served three ways:

    python bench/_workers_app.py granian PORT THREADS    # fhirsrv's own granian set-up (serving.py)
    python bench/_workers_app.py waitress PORT THREADS   # the single process of `fhirsrv serve`
    gunicorn --worker-class gthread ... '_workers_app:make_app()'   # the comparison, if installed

Every setting comes from the FHIRSRV_* environment the benchmark sets (FHIRSRV_WORKERS the
number of processes); the fixed route's size from FHIRSRV_BENCH_FIXED_BYTES. The database is
prepared (migrated, loaded) by the benchmark before any server starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import with_fixed_route  # noqa: E402

from fhirsrv.app import create_app, make_server  # noqa: E402
from fhirsrv.settings import Settings  # noqa: E402


def make_app() -> Any:
    """The app of one process (a factory: called in each worker after the fork)."""
    return with_fixed_route(create_app(Settings.from_env()), int(os.environ.get("FHIRSRV_BENCH_FIXED_BYTES", "400")))


def main(kind: str, port: int, threads: int) -> None:
    settings = Settings.from_env()
    if kind == "waitress":
        make_server(make_app(), settings, "127.0.0.1", port, threads, ident="fhirsrv-bench").run()
        return
    from fhirsrv.serving import serve_workers
    from fhirsrv.wiring import build_services

    serve_workers(settings, build_services(settings), "127.0.0.1", port, threads, factory=make_app)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
