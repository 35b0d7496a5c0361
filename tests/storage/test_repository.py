"""Versioned repository: server-owned meta, optimistic locking, history order."""

from __future__ import annotations

import pytest

from fhirsrv.errors import Conflict
from fhirsrv.storage import repository as repo
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.jsonfmt import loads


def test_create_stamps_meta_and_keeps_versions(engine):
    with write_transaction(engine) as conn:
        first = repo.create(conn, {"resourceType": "Organization", "name": "Ligue"}, "org1")
    with write_transaction(engine) as conn:
        second = repo.replace(conn, first, {"resourceType": "Organization", "name": "Ligue 29"}, "update")
    assert second.version_id == 2 and second.last_updated > first.last_updated
    body = loads(second.content)
    assert list(body)[:3] == ["resourceType", "id", "meta"]
    assert body["meta"]["versionId"] == "2"
    with read_transaction(engine) as conn:
        assert loads(repo.get_version(conn, "Organization", "org1", 1).content)["name"] == "Ligue"
        assert [v.version_id for v in repo.history(conn, res_type="Organization", res_id="org1")] == [2, 1]


def test_duplicate_id_conflicts_and_stale_update_fails(engine):
    with write_transaction(engine) as conn:
        first = repo.create(conn, {"resourceType": "Location"}, "loc")
    with pytest.raises(Conflict), write_transaction(engine) as conn:
        repo.create(conn, {"resourceType": "Location"}, "loc")
    with write_transaction(engine) as conn:
        repo.replace(conn, first, {"resourceType": "Location", "name": "a"}, "update")
    with pytest.raises(repo.ConcurrentUpdate), write_transaction(engine) as conn:
        repo.replace(conn, first, {"resourceType": "Location", "name": "b"}, "update")
    with read_transaction(engine) as conn:
        assert loads(repo.get_current(conn, "Location", "loc").content)["name"] == "a"


def test_create_many_returns_row_ids_in_order(engine):
    items = [({"resourceType": "Location", "name": f"L{i}"}, f"loc-{i}") for i in range(250)]
    with write_transaction(engine) as conn:
        stored = repo.create_many(conn, items)
    assert [s.res_id for s in stored] == [f"loc-{i}" for i in range(250)]
    with read_transaction(engine) as conn:
        again = repo.get_many(conn, [s.rid for s in stored])
        assert [loads(s.content)["name"] for s in again] == [f"L{i}" for i in range(250)]
        assert repo.get_version(conn, "Location", "loc-42", 1) is not None
    with pytest.raises(Conflict), write_transaction(engine) as conn:
        repo.create_many(
            conn, [({"resourceType": "Location"}, "loc-new"), ({"resourceType": "Location"}, "loc-7")]
        )
    with read_transaction(engine) as conn:
        assert repo.get_current(conn, "Location", "loc-new") is None
