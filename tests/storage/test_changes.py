"""The change log numbers changes in commit order, whatever opened the transaction."""

from __future__ import annotations

import threading

import pytest

from fhirsrv.storage import changes
from fhirsrv.storage import repository as repo
from fhirsrv.storage.engine import read_transaction, write_transaction
from tests.conftest import ONLY_POSTGRES


def _log(engine):
    with read_transaction(engine) as conn:
        return changes.after(conn, 0, limit=1000)


def test_every_version_is_logged_in_order(engine):
    with write_transaction(engine) as conn:
        first = repo.create(conn, {"resourceType": "Location", "name": "a"}, "loc")
        repo.create_many(conn, [({"resourceType": "Location"}, f"many-{i}") for i in range(3)])
    with write_transaction(engine) as conn:
        second = repo.replace(conn, first, {"resourceType": "Location", "name": "b"}, "update")
    with write_transaction(engine) as conn:
        repo.replace(conn, second, None, "delete")
    log = _log(engine)
    assert [(c.res_id, c.version_id) for c in log] == [
        ("loc", 1), ("many-0", 1), ("many-1", 1), ("many-2", 1), ("loc", 2), ("loc", 3)
    ]
    assert all(c.new_version for c in log)
    assert [c.seq for c in log] == sorted(c.seq for c in log)
    assert [c.at for c in log] == sorted(c.at for c in log)
    with read_transaction(engine) as conn:
        assert changes.last_seq(conn) == log[-1].seq
        assert [c.version_id for c in changes.after(conn, log[3].seq, limit=10)] == [2, 3]


def test_a_rolled_back_write_logs_nothing(engine):
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        repo.create(conn, {"resourceType": "Location"}, "gone")
        raise RuntimeError("the request failed after the write")
    with write_transaction(engine) as conn:
        repo.create(conn, {"resourceType": "Location"}, "kept")
    assert [c.res_id for c in _log(engine)] == ["kept"]


def test_a_transaction_opened_without_the_helper_is_logged_too(engine):
    with engine.begin() as conn:
        repo.create(conn, {"resourceType": "Location"}, "plain")
    assert [c.res_id for c in _log(engine)] == ["plain"]


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_write_that_commits_late_is_numbered_after_the_ones_before_its_commit(engine):
    """The case timestamps get wrong: `early` stamps its version first but commits last. A
    reader that saw `late`'s change must still find `early`'s after it."""
    stamped = threading.Event()
    proceed = threading.Event()

    def early() -> None:
        with write_transaction(engine) as conn:
            repo.create(conn, {"resourceType": "Location"}, "early")
            stamped.set()
            proceed.wait(10)

    writer = threading.Thread(target=early)
    writer.start()
    assert stamped.wait(10)
    with write_transaction(engine) as conn:
        repo.create(conn, {"resourceType": "Location"}, "late")
    seen = _log(engine)
    assert [c.res_id for c in seen] == ["late"]
    proceed.set()
    writer.join(10)
    with read_transaction(engine) as conn:
        rest = changes.after(conn, seen[-1].seq, limit=10)
        early_version = repo.get_current(conn, "Location", "early")
        late_version = repo.get_current(conn, "Location", "late")
    assert [c.res_id for c in rest] == ["early"]
    assert early_version.last_updated <= late_version.last_updated  # the stamp order, not the commit's
