"""Under `fhirsrv serve` (waitress), a request whose client closes its connection stops at its
next SQL statement and rolls back, instead of running to the end for nobody."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time

import orjson
import pytest
from flask import Flask
from sqlalchemy import Engine, func, select, text

from fhirsrv.app import make_server
from fhirsrv.settings import Settings
from fhirsrv.storage.schema import resource
from tests.api.helpers import org

# Entries enough for the transaction to take seconds, so the client leaves in its middle.
ENTRIES = 3000
# Safety limit: the test must end, not wait forever.
MUST_END_WITHIN = 300


def _writing_underway(engine: Engine) -> bool:
    """Another connection holds the write lock: PostgreSQL's on the resource table, SQLite's on
    the database file."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'resource' "
                        "AND n.nspname = current_schema() AND l.mode = 'RowExclusiveLock' "
                        "AND l.pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    probe = sqlite3.connect(engine.url.database or "", timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


def _organizations(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(resource).where(resource.c.res_type == "Organization")
        ).scalar_one()


def test_a_transaction_whose_client_leaves_stops_and_writes_nothing(
    app: Flask, engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": org(f"Structure {i}"), "request": {"method": "POST", "url": "Organization"}}
            for i in range(ENTRIES)
        ],
    }
    body = orjson.dumps(bundle)
    head = f"POST /fhir HTTP/1.1\r\nHost: fhir.test\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
    server = make_server(app, settings, "127.0.0.1", 0, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + MUST_END_WITHIN
    try:
        with caplog.at_level(logging.INFO, logger="fhirsrv"):
            client = socket.create_connection(("127.0.0.1", server.effective_port))
            client.sendall(head.encode() + body)
            while not _writing_underway(engine) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _writing_underway(engine), "the transaction did not start"
            client.close()  # the client leaves while its transaction runs
            while (
                "request abandoned" not in caplog.text
                and _organizations(engine) == 0
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
    finally:
        server.close()
    assert "request abandoned" in caplog.text
    assert _organizations(engine) == 0
