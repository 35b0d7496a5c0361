"""The server's CPU time per request under `fhirsrv serve --workers 2`'s granian set-up and
gunicorn's gthread workers (when installed): user + system time of the server's processes (the
parent and its workers, from /proc) over a fixed number of requests, so that the figure holds on
a machine busy with other work, where requests a second (bench/workers_bench.py) do not.

Requests: the fixed-bytes route (the server's own cost) and an anonymous read by id (authorization
on), each from 4 keep-alive connections, SQLite with `--organizations` published structures.
Each server is measured `--rounds` times, interleaved. Linux only (/proc).

Usage: python bench/serving_cpu_bench.py [--rounds 2] [--fixed 4000] [--reads 2000] [--organizations 20]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workers_bench as wb  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 4


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) used so far by `pid` and its live children."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def send(port: int, paths: list[str], count: int) -> None:
    """`count` GETs over CONNECTIONS keep-alive connections, each answered 200."""

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for k in range(count // CONNECTIONS):
            conn.request("GET", paths[(k + offset) % len(paths)], headers={"Accept": "application/fhir+json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fixed", type=int, default=4000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--organizations", type=int, default=20)
    args = parser.parse_args()
    servers = ["granian"] + (["gunicorn"] if importlib.util.find_spec("gunicorn") else [])
    tmp = Path(tempfile.mkdtemp(prefix="fhirsrv-cpu-bench-"))
    try:
        url = f"sqlite:///{tmp / 'db.sqlite3'}"
        wb.prepare(url, args.organizations)
        found: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for kind in servers:
                process, port = wb.start(kind, 2, 8, url, tmp)
                try:
                    reads = wb.read_paths(port)
                    send(port, reads + [wb.FIXED], 200)  # warm-up: pools, caches
                    for name, paths, count in (("fixed bytes", [wb.FIXED], args.fixed), ("read", reads, args.reads)):
                        before = server_cpu(process.pid)
                        send(port, paths, count)
                        found.setdefault((kind, name), []).append((server_cpu(process.pid) - before) / count * 1000)
                finally:
                    wb.stop(process)
        for (kind, name), values in sorted(found.items()):
            print(f"{kind:9} {name:12} server CPU ms a request: " + " / ".join(f"{v:.3f}" for v in values))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
