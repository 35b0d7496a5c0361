"""A read by id run on the pool's driver connection (storage/rawread.py) answers what the same
statement answers through SQLAlchemy, and gives the connection back as it found it."""

from __future__ import annotations

import pytest
from flask import Flask

from fhirsrv.access.principal import ANONYMOUS, SERVER
from fhirsrv.interactions import writes
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.repository import get_current

LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"


def _organization(name: str, status: str) -> dict[str, object]:
    return {
        "resourceType": "Organization",
        "name": name,
        "extension": [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": status}]}],
    }


def test_a_read_by_id_answers_what_the_same_read_in_a_transaction_answers(app: Flask) -> None:
    services = app.extensions["fhirsrv"]
    with write_transaction(services.engine) as conn:
        writes.create(services, conn, _organization("Publiée", "published"), "shown", actor=SERVER)
        writes.create(services, conn, _organization("Brouillon", "draft"), "draft", actor=SERVER)
    answers = {}
    for principal in (ANONYMOUS, SERVER):
        for res_id in ("shown", "draft", "never-written"):
            alone = services.policy.read_current_alone(services.engine, principal, "Organization", res_id)
            with read_transaction(services.engine) as conn:
                assert alone == services.policy.read_current(conn, principal, "Organization", res_id)
            answers[(principal.role, res_id)] = (alone[0] is not None, alone[1])
    assert answers == {
        (ANONYMOUS.role, "shown"): (True, True),
        (ANONYMOUS.role, "draft"): (True, False),  # stored, not shown: answered as unknown
        (ANONYMOUS.role, "never-written"): (False, False),
        (SERVER.role, "shown"): (True, True),
        (SERVER.role, "draft"): (True, True),
        (SERVER.role, "never-written"): (False, False),
    }


def test_after_a_read_by_id_a_failed_write_on_the_same_connection_writes_nothing(app: Flask) -> None:
    """The read runs outside any transaction block; the connection must not stay so, or the
    next transaction on it would commit statement by statement."""
    services = app.extensions["fhirsrv"]
    engine = services.engine
    for _ in range(3):  # every connection the pool holds has served a read by id
        services.policy.read_current_alone(engine, ANONYMOUS, "Organization", "any")
    assert engine.pool.checkedout() == 0
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        writes.create(services, conn, _organization("Jamais écrite", "published"), "never", actor=SERVER)
        raise RuntimeError("the write fails after its first statement")
    with read_transaction(engine) as conn:
        assert get_current(conn, "Organization", "never") is None
