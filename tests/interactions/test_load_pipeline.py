"""The loader's worker processes end with the load, even when the load is killed with -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fhirsrv.interactions.load import PARALLEL_MIN_BYTES

# Safety limits, far above what either step takes: the test must end, not wait forever.
WORKERS_START_WITHIN = 300
WORKERS_GONE_WITHIN = 60


def _children(parent: int) -> dict[int, str]:
    """The live child processes of `parent` (pid: command line), zombies excluded."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(parent) and not fields.get("State", "").startswith("Z"):
            found[int(entry.name)] = command
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state  # a zombie has ended; only its exit status is left


def _large_ndjson(path: Path) -> None:
    """More organisations than the parallel threshold, so the load goes through the workers."""
    with path.open("w", encoding="utf-8") as out:
        number = 0
        while out.tell() < PARALLEL_MIN_BYTES * 3:
            number += 1
            org = {
                "resourceType": "Organization",
                "id": f"org-{number}",
                "name": f"Association de soins de support numéro {number}",
                "alias": [f"ASS {number}", f"Soins de support {number}"],
                "address": [{"city": "Quimper", "postalCode": "29000", "line": [f"{number} rue de Brest"]}],
            }
            out.write(json.dumps(org, ensure_ascii=False) + "\n")


def test_workers_exit_when_the_loading_process_is_killed(tmp_path: Path):
    data = tmp_path / "orgs.ndjson"
    _large_ndjson(data)
    env = {"PATH": "/usr/bin:/bin", "FHIRSRV_LOAD_WORKERS": "2"}
    database = f"sqlite:///{tmp_path / 'load.sqlite3'}"
    loader = subprocess.Popen(
        [sys.executable, "-m", "fhirsrv.cli", "load", str(data), "--database", database],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WORKERS_START_WITHIN
        workers: list[int] = []
        while len(workers) < 2 and loader.poll() is None and time.monotonic() < deadline:
            workers = [pid for pid, command in _children(loader.pid).items() if "spawn_main" in command]
            time.sleep(0.1)
        assert len(workers) == 2, "the load's two workers did not start"
        os.kill(loader.pid, signal.SIGKILL)
        assert loader.wait(30) == -signal.SIGKILL, "the load ended before it could be killed"
        deadline = time.monotonic() + WORKERS_GONE_WITHIN
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in workers if _alive(pid)]
    finally:
        if loader.poll() is None:
            loader.kill()
    for pid in left:  # leave nothing behind, then fail
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"worker processes {left} outlived their killed parent"
