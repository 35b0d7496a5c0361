"""The `fhirsrv` command: load (atomic per file, clear errors), db upgrade, serve."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from fhirsrv.cli import main
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.schema import resource
from tests.tcp_faults import free_port, silent_port


def _count(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(resource)).scalar_one()
    engine.dispose()
    return n


def test_load_resources_bundles_and_ndjson(db_url: str, tmp_path: Path):
    (tmp_path / "org.json").write_text(json.dumps({"resourceType": "Organization", "id": "o1", "name": "A"}))
    (tmp_path / "locs.ndjson").write_text(
        "\n".join(json.dumps({"resourceType": "Location", "id": f"l{i}", "name": f"L{i}"}) for i in range(3))
    )
    (tmp_path / "tx.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": "urn:uuid:0b3c1e5e-0000-4000-8000-000000000001",
                        "resource": {
                            "resourceType": "Endpoint",
                            "status": "active",
                            "address": "mailto:a@b.fr",
                            "connectionType": {"code": "direct-project"},
                            "payloadType": [{"text": "x"}],
                        },
                        "request": {"method": "POST", "url": "Endpoint"},
                    }
                ],
            }
        )
    )
    result = CliRunner().invoke(main, ["load", str(tmp_path), "--database", db_url])
    assert result.exit_code == 0, result.output
    assert (
        "Location\t3" in result.output
        and "Organization\t1" in result.output
        and "Endpoint\t1" in result.output
    )
    assert _count(db_url) == 5
    again = CliRunner().invoke(main, ["load", str(tmp_path / "org.json"), "--database", db_url])
    assert "1 unchanged" in again.output


def test_load_bad_file_names_file_and_entry_and_writes_nothing_of_it(db_url: str, tmp_path: Path):
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        json.dumps({"resourceType": "Organization", "id": "ok1"})
        + "\n"
        + json.dumps({"resourceType": "Organization", "id": "ko", "active": "maybe"})
        + "\n"
    )
    result = CliRunner().invoke(main, ["load", str(bad), "--database", db_url])
    assert result.exit_code == 1
    assert f"{bad}, line 2" in result.output
    assert _count(db_url) == 0


def test_db_upgrade_reports_revision(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = CliRunner().invoke(main, ["db", "upgrade", "--database", url])
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from fhirsrv.storage.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert result.exit_code == 0 and f"revision {head}" in result.output
    again = CliRunner().invoke(main, ["db", "upgrade", "--database", url])
    assert again.exit_code == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_metadata_on_an_embedded_database(tmp_path: Path):
    port = _free_port()
    env = {"FHIRSRV_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(port), "--no-demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2) as res:
                    statement = json.loads(res.read())
                break
            except OSError as exc:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        proc.stdout.read().decode() if proc.poll() is not None else "timeout"
                    ) from exc
                time.sleep(0.3)
        assert statement["resourceType"] == "CapabilityStatement"
        assert (tmp_path / "fhirsrv.sqlite3").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_clients_add_prints_its_json_and_nothing_else(tmp_path: Path):
    """A first command on a fresh database migrates it: quietly, the JSON alone on the terminal."""
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "clients", "add", "Santélien", "--scopes", "system/*.rs",
         "--role", "partner-reader", "--database", url],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["role"] == "partner-reader"
    assert done.stderr == ""


def test_serve_on_a_busy_port_stops_at_once_with_one_line(tmp_path: Path):
    """Not after the first load of the database, and not with a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(port), "--no-demo"],
            capture_output=True, text=True, env={"FHIRSRV_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            timeout=600, check=False,
        )  # fmt: skip
    assert done.returncode != 0
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and f"127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "fhirsrv.sqlite3").exists()


def _serve_against(database: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {"FHIRSRV_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **variables}
    return subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(_free_port()), "--database", database],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def test_serve_against_a_stopped_database_prints_one_line_and_exits_1(tmp_path: Path):
    """Not a 144-line driver traceback: which database, and that it cannot be reached."""
    port = free_port()
    done = _serve_against(f"postgresql://fhirsrv:secret@127.0.0.1:{port}/directory", tmp_path)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: database postgresql+psycopg://fhirsrv:***@127.0.0.1:")
    assert f":{port}/directory unavailable: the database cannot be reached" in done.stderr
    assert "secret" not in done.stderr


def test_serve_against_a_hanging_database_gives_up_after_the_connect_timeout(tmp_path: Path):
    with silent_port() as port:
        done = _serve_against(
            f"postgresql://fhirsrv@127.0.0.1:{port}/directory", tmp_path, FHIRSRV_DB_CONNECT_TIMEOUT="2"
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "did not answer in time" in done.stderr, done.stderr


def test_serve_on_an_unopenable_sqlite_file_prints_one_line_and_exits_1(tmp_path: Path):
    (tmp_path / "a-directory.sqlite3").mkdir()
    done = _serve_against(f"sqlite:///{tmp_path / 'a-directory.sqlite3'}", tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot be opened" in done.stderr, done.stderr
