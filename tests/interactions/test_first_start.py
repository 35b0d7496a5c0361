"""The first start's content is one unit: a start killed while loading it leaves nothing
behind, and the next start loads all of it (it used to restart on 1,712 of 3,591 resources,
the database no longer "empty")."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fhirsrv.interactions.load import load_initial_content
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.schema import resource
from fhirsrv.wiring import build_services
from tests.tcp_faults import free_port

ROOT = Path(__file__).resolve().parents[2]
# Safety limit for the first start to reach the demo files (a minute on a small machine).
DEMO_REACHED_WITHIN = 600


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = dict(
            conn.execute(select(resource.c.res_type, func.count()).group_by(resource.c.res_type)).all()
        )
    engine.dispose()
    return counts


def _first_start(url: str) -> None:
    """What `fhirsrv serve` does before it listens: load the initial content if it is missing."""
    services = build_services(Settings.from_env(database_url=url, load_demo=True))
    load_initial_content(services, demo=True)
    services.engine.dispose()


@pytest.fixture(scope="module")
def clean_load(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Resources per type after an uninterrupted first start."""
    url = f"sqlite:///{tmp_path_factory.mktemp('clean') / 'clean.sqlite3'}"
    _first_start(url)
    return _counts(url)


def _lines(stream) -> queue.Queue[str | None]:  # type: ignore[no-untyped-def]
    """The lines of a child's output as they come (None at its end), never blocking the test."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _demo_under_way(line: str, url: str) -> bool:
    """A demo file has been loaded (the loader says so), or demo resources are visible."""
    if "loaded " in line and "/seed/demo/" in line:  # the line, whatever FHIRSRV_LOG_FORMAT says
        return True
    return _counts(url).get("Organization", 0) > 0


def test_a_first_start_killed_while_loading_is_completed_by_the_next(
    db_url: str, tmp_path: Path, clean_load: dict[str, int]
):
    assert _counts(db_url) == {}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhirsrv.cli",
            "-v",
            "serve",
            "--port",
            str(free_port()),
            "--database",
            db_url,
        ],
        env={"PATH": "/usr/bin:/bin", "FHIRSRV_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    said: list[str] = []
    try:
        lines = _lines(server.stdout)
        deadline = time.monotonic() + DEMO_REACHED_WITHIN
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2) or ""
            except queue.Empty:
                line = ""
            said.append(line)
            if _demo_under_way(line, db_url) or server.poll() is not None:
                break
        os.kill(server.pid, signal.SIGKILL)
        assert server.wait(30) == -signal.SIGKILL, "".join(said)
    finally:
        if server.poll() is None:
            server.kill()
    output = "".join(said)
    assert "in one transaction" in output, output  # the start says how it loads
    assert "empty database: loaded" not in output, "the first start finished before it could be killed"

    _first_start(db_url)

    assert _counts(db_url) == clean_load
    assert clean_load["HealthcareService"] > 0 and clean_load["ValueSet"] > 0


def test_a_first_start_with_a_bad_file_keeps_nothing_and_says_so_in_one_line(db_url: str, tmp_path: Path):
    content = tmp_path / "content"
    demo = content / "seed" / "demo"
    demo.mkdir(parents=True)
    for shipped in ("profiles", "terminology"):
        (content / shipped).symlink_to(ROOT / shipped)
    (demo / "01-good.ndjson").write_text('{"resourceType": "Organization", "id": "kept", "name": "Bonne"}\n')
    (demo / "02-bad.ndjson").write_text('{"resourceType": "Organization", "id": "bad", "active": "yes"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(free_port()), "--database", db_url],
        env={"PATH": "/usr/bin:/bin", "FHIRSRV_DATA_DIR": str(tmp_path), "FHIRSRV_CONTENT_ROOT": str(tmp_path / "content")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the initial content could not be loaded, nothing of it was kept")
    assert "02-bad.ndjson, line 1" in last and "Traceback" not in done.stderr
    assert _counts(db_url) == {}  # not even the conformance content and the good file before it
