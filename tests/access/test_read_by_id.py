"""A read by id follows the entry as it is now, whoever changed it: the policy keeps each
principal's read statement between requests (access/policy.py), never an answer, so a status
written by another process (here another app on the same database) decides the next read."""

from __future__ import annotations

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions import writes
from fhirsrv.storage import repository
from tests.access.directory import ENTRIES, PRINCIPALS, Directory, lifecycle

ANONYMOUS = next(p for p in PRINCIPALS if p.role is None)
PARTNER = next(p for p in PRINCIPALS if p.name == "partner-reader")


def _set_status(directory: Directory, key: str, status: str) -> None:
    """Another process's write: through an app of its own, on the fixture's database."""
    other = directory.app_with(token_lifetime=3601).extensions["fhirsrv"]
    res_type, res_id = key.split("/")
    with other.engine.begin() as conn:
        current = repository.get_current(conn, res_type, res_id)
        assert current is not None
        body = dict(ENTRIES[key].body) | {"extension": lifecycle(status)}
        writes.replace(other, conn, current, body, actor=SERVER)


def test_a_read_by_id_sees_a_status_another_process_wrote(directory: Directory) -> None:
    key = "Organization/o35-published"
    anonymous, partner = directory.headers(ANONYMOUS), directory.headers(PARTNER)
    try:
        assert directory.web.get(f"/fhir/{key}", headers=anonymous).status_code == 200
        assert directory.web.get(f"/fhir/{key}", headers=partner).status_code == 200
        _set_status(directory, key, "draft")
        assert directory.web.get(f"/fhir/{key}", headers=anonymous).status_code == 404
        assert directory.web.get(f"/fhir/{key}", headers=partner).status_code == 404
        _set_status(directory, key, "published")
        answer = directory.web.get(f"/fhir/{key}", headers=anonymous)
        assert answer.status_code == 200 and answer.headers["ETag"] == 'W/"3"'
    finally:
        directory.reset()
