"""Bulk Data `$export` over HTTP, as a syncing platform uses it: kick-off, status, manifest,
files, cancel, expiry, restarts, and who may see what. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from fhirsrv.access.principal import SERVER
from fhirsrv.api.bulk_export import worker
from fhirsrv.app import create_app
from fhirsrv.interactions import writes
from fhirsrv.storage import changes, repository
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.sync import export_jobs, export_runner
from fhirsrv.sync.export_ops import BULK_EXPORT
from fhirsrv.sync.export_tables import export_job
from tests.api.helpers import ALIAS_SEARCH_PARAMETER
from tests.auth.conftest import Clients, auth_settings, directory, location, organization, service
from tests.sync.exports import ASYNC, FHIR, export, ids, kick_off, lines, local, manifest, resources, wait

# What anonymous callers (and so an anonymous export) see of tests/auth/conftest.py's directory.
PUBLIC = {
    "Organization/org-29", "Organization/org-35", "Location/loc-29", "Location/loc-35",
    "HealthcareService/hs-29", "HealthcareService/hs-35", "HealthcareService/hs-29-pending",
}  # fmt: skip
EVERYTHING = {f"{r['resourceType']}/{r['id']}" for r in directory()}

AppFactory = Callable[..., Flask]


@pytest.fixture
def apps(db_url: str) -> Iterator[AppFactory]:
    """Apps on the test database (auth on), each with the settings a test gives; the first one
    made writes the directory."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(auth_settings(db_url, **overrides))
        if not made:
            services = app.extensions["fhirsrv"]
            with services.engine.begin() as conn:
                for res in directory():
                    writes.create(services, conn, dict(res), res["id"], actor=SERVER)
        made.append(app)
        return app

    yield make
    for app in made:
        worker(app).join(60)
        app.extensions["fhirsrv"].engine.dispose()


@pytest.fixture
def app(apps: AppFactory) -> Flask:
    return apps()


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin(app: Flask) -> dict[str, str]:
    return Clients(app).headers()


def _jobs(app: Flask) -> int:
    with app.extensions["fhirsrv"].engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(export_job)).scalar_one()


def _job_id(status: str) -> str:
    return status.rsplit("/", 1)[1]


def _held(app: Flask) -> Any:
    """The export lock, as another process working a job holds it: jobs stay queued."""
    return one_at_a_time(app.extensions["fhirsrv"].engine, export_runner.LOCK_NAME, export_runner.LOCK_KEY)


# ----------------------------------------------------------------------------------- kick-off
def test_the_kick_off_needs_prefer_respond_async(web: FlaskClient, admin: dict[str, str], app: Flask) -> None:
    response = web.get("/fhir/$export", headers=admin)
    assert response.status_code == 400
    assert "Prefer: respond-async" in response.get_json()["issue"][0]["diagnostics"]
    assert _jobs(app) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/$export?_type=Patient",
        "/fhir/$export?_type=Organization,Bogus",
        "/fhir/$export?_outputFormat=text/csv",
        "/fhir/$export?_outputFormat=ndjson&_outputFormat=ndjson",
        "/fhir/$export?_since=2026-11-28",
        "/fhir/$export?_since=yesterday",
        "/fhir/$export?_since=2026-11-28T10:00:00Z&_since=2026-11-29T10:00:00Z",
        "/fhir/$export?_elements=id",
        "/fhir/$export?includeAssociatedData=LatestProvenanceResources",
        "/fhir/$export?patient=Patient/1",
        "/fhir/$export?_typeFilter=HealthcareService?_sort=name",
        "/fhir/$export?_typeFilter=HealthcareService?_count=5%26name=x",
        "/fhir/$export?_typeFilter=HealthcareService?nonsense=1",
        "/fhir/$export?_typeFilter=HealthcareService",
        "/fhir/$export?_typeFilter=Patient?name=x",
        "/fhir/$export?_type=Organization&_typeFilter=HealthcareService?name=x",
        "/fhir/$export?_typeFilter=HealthcareService?_lastUpdated=gt2026-02-30",
        "/fhir/HealthcareService/$export?_type=Organization",
        "/fhir/$export?_type=Subscription",
        "/fhir/$export?_type=Organization,Subscription",
        "/fhir/Subscription/$export",
    ],
)
def test_bad_parameters_are_refused_with_an_outcome(
    web: FlaskClient, admin: dict[str, str], app: Flask, url: str
) -> None:
    response = web.get(url, headers={**admin, **ASYNC})
    assert response.status_code == 400, (url, response.get_json())
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
    assert _jobs(app) == 0


def test_an_unknown_type_level_is_404(web: FlaskClient, admin: dict[str, str]) -> None:
    assert web.get("/fhir/Patient/$export", headers={**admin, **ASYNC}).status_code == 404


def test_lenient_handling_ignores_unsupported_parameters_and_reports_them(
    web: FlaskClient, admin: dict[str, str]
) -> None:
    headers = {**admin, "Prefer": "respond-async, handling=lenient"}
    url = "/fhir/$export?_elements=id&_type=HealthcareService,Bogus&_typeFilter=HealthcareService?nonsense=1%26_id=hs-29"
    found = manifest(web, kick_off(web, url, headers), admin)
    assert ids(resources(web, found, admin)) == {"HealthcareService/hs-29"}
    (error,) = found["error"]
    assert error["type"] == "OperationOutcome" and error["count"] == 1
    (outcome,) = lines(web, error["url"], admin)
    said = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "_elements" in said and "nonsense" in said and "Bogus" in said
    assert {i["severity"] for i in outcome["issue"]} == {"warning"}


def test_group_export_is_refused_and_the_capability_statement_says_so(
    web: FlaskClient, admin: dict[str, str]
) -> None:
    response = web.get("/fhir/Group/cohort/$export", headers={**admin, **ASYNC})
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "not-supported" and "Group" in issue["diagnostics"]
    rest = web.get("/fhir/metadata").get_json()["rest"][0]
    (system,) = [op for op in rest["operation"] if op["name"] == "export"]
    assert system["definition"] == BULK_EXPORT and "Group" in system["documentation"]
    services = next(r for r in rest["resource"] if r["type"] == "HealthcareService")
    assert any(op["name"] == "export" for op in services["operation"])


# ------------------------------------------------------------------------------ the manifest
def test_a_regional_admin_exports_the_whole_directory(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    status = kick_off(web, "/fhir/$export", admin)
    response = wait(web, status, admin)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Expires"]
    found = response.get_json()
    assert found["request"] == "http://fhir.test/fhir/$export"
    assert found["requiresAccessToken"] is True and found["error"] == []
    # The commit instant of the last change the export holds (the directory's writing).
    when = datetime.fromisoformat(found["transactionTime"]).replace(tzinfo=None)
    with app.extensions["fhirsrv"].engine.connect() as conn:
        assert changes.tip(conn)[1] == when
    # One file per type, in the order a load needs them (structures before their offers).
    assert [o["type"] for o in found["output"]] == [
        "Organization",
        "Location",
        "Practitioner",
        "HealthcareService",
    ]
    assert all(
        o["url"].startswith(f"http://fhir.test/fhir/$export-file/{_job_id(status)}/") for o in found["output"]
    )
    exported = resources(web, found, admin)
    assert ids(exported) == EVERYTHING
    for res_type, items in exported.items():
        for res in items:  # as a read serves it: the stored JSON, meta.versionId and lastUpdated included
            assert res == web.get(f"/fhir/{res_type}/{res['id']}", headers=admin).get_json()
            assert res["meta"]["versionId"] == "1"


def test_a_type_level_export_holds_that_type(web: FlaskClient, admin: dict[str, str]) -> None:
    found = export(web, "/fhir/HealthcareService/$export", admin)
    assert [o["type"] for o in found["output"]] == ["HealthcareService"]
    assert ids(resources(web, found, admin)) == {k for k in EVERYTHING if k.startswith("HealthcareService/")}
    assert found["request"] == "http://fhir.test/fhir/HealthcareService/$export"


def test_an_early_since_is_an_instant_like_any_other(web: FlaskClient, admin: dict[str, str]) -> None:
    found = export(web, "/fhir/HealthcareService/$export?_since=0001-01-01T00:00:00Z", admin)
    assert ids(resources(web, found, admin)) == {k for k in EVERYTHING if k.startswith("HealthcareService/")}


def test_a_post_kick_off_takes_parameters(web: FlaskClient, admin: dict[str, str]) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Organization,Location"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "_typeFilter", "valueString": "Location?_id=loc-35"},
        ],
    }
    found = export(web, "/fhir/$export", {**admin, "Content-Type": FHIR}, method="POST", json=body)
    assert ids(resources(web, found, admin)) == {
        "Organization/org-29",
        "Organization/org-35",
        "Location/loc-35",
    }
    assert found["request"] == "http://fhir.test/fhir/$export"  # a POST's parameters were in its body


def test_type_filters_of_one_type_are_alternatives(web: FlaskClient, admin: dict[str, str]) -> None:
    url = (
        "/fhir/$export?_type=HealthcareService,Location"
        "&_typeFilter=HealthcareService?_id=hs-29&_typeFilter=HealthcareService?_id=hs-35"
    )
    found = resources(web, export(web, url, admin), admin)
    assert ids(found, "HealthcareService") == {"HealthcareService/hs-29", "HealthcareService/hs-35"}
    assert ids(found, "Location") == {"Location/loc-29", "Location/loc-35"}  # no filter: all of them


def test_a_type_filter_is_the_callers_own_search(apps: AppFactory) -> None:
    """Chains and all: the filter goes through the search engine, under the caller's scope."""
    web = apps(export_anonymous=True).test_client()
    url = "/fhir/$export?_type=HealthcareService&_typeFilter=HealthcareService?organization.name:contains=org-29"
    found = resources(web, export(web, url), {})
    # Not the draft nor the delisted offer of that structure: not in the public view.
    assert ids(found) == {"HealthcareService/hs-29", "HealthcareService/hs-29-pending"}


def _rename(web: FlaskClient, admin: dict[str, str], key: str, name: str) -> None:
    changed = web.get(f"/fhir/{key}", headers=admin).get_json()
    assert web.put(f"/fhir/{key}", json=changed | {"name": name}, headers=admin).status_code == 200


def test_since_keeps_what_changed_and_names_deletions(web: FlaskClient, admin: dict[str, str]) -> None:
    _rename(web, admin, "HealthcareService/hs-29", "Offre du matin")
    since = export(web, "/fhir/$export", admin)["transactionTime"]  # when that change committed
    _rename(web, admin, "HealthcareService/hs-35", "Offre renommée")
    assert web.delete("/fhir/Practitioner/pr-1", headers=admin).status_code in (200, 204)
    found = export(web, f"/fhir/$export?_since={since.replace('+', '%2B')}", admin)
    exported = resources(web, found, admin)
    # What changed since, and the change of that very instant once more (never less).
    assert ids(exported) == {"HealthcareService/hs-35", "HealthcareService/hs-29"}
    assert {r["name"] for r in exported["HealthcareService"]} == {"Offre renommée", "Offre du matin"}
    (deleted,) = found["deleted"]
    (bundle,) = lines(web, deleted["url"], admin)
    assert bundle["type"] == "transaction"
    assert bundle["entry"] == [{"request": {"method": "DELETE", "url": "Practitioner/pr-1"}}]
    # An unencoded "+" (a space once decoded) still reads as the instant's offset.
    again = export(web, f"/fhir/$export?_type=HealthcareService&_since={since}", admin)
    assert ids(resources(web, again, admin)) == {"HealthcareService/hs-35", "HealthcareService/hs-29"}
    latest = export(web, f"/fhir/$export?_since={found['transactionTime'].replace('+', '%2B')}", admin)
    assert latest["output"] == [] and len(latest["deleted"]) == 1  # the deletion was the last change


def test_since_has_what_joined_the_callers_view_without_a_version_of_its_own(apps: AppFactory) -> None:
    """A structure published: its offers become public with it, unchanged themselves. An
    anonymous export since before that has them, as a search now finds them."""
    app = apps(export_anonymous=True)
    web = app.test_client()
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        writes.create(services, conn, organization("org-new", "29", "submitted"), "org-new", actor=SERVER)
        writes.create(services, conn, location("loc-new", "org-new", "29200"), "loc-new", actor=SERVER)
        writes.create(services, conn, service("hs-new", "org-new", "loc-new"), "hs-new", actor=SERVER)

    def replace(key: str, body: dict[str, Any]) -> None:
        with services.engine.begin() as conn:
            current = repository.get_current(conn, *key.split("/"))
            assert current is not None
            writes.replace(services, conn, current, body, actor=SERVER)

    replace("HealthcareService/hs-29", service("hs-29", "org-29", "loc-29") | {"name": "Offre du matin"})
    since = export(web, "/fhir/$export")["transactionTime"]  # when hs-29 changed, after the new entries
    replace("Organization/org-new", organization("org-new", "29", "published"))
    found = resources(web, export(web, f"/fhir/$export?_since={since.replace('+', '%2B')}"))
    # The place and the offer have no version since: their visibility changed with the structure's.
    assert ids(found) == {
        "HealthcareService/hs-29", "Organization/org-new", "Location/loc-new", "HealthcareService/hs-new",
    }  # fmt: skip


def test_since_names_what_left_the_callers_view_and_nothing_it_never_saw(apps: AppFactory) -> None:
    """A structure delisted: to an anonymous caller, it and its places and offers are gone
    (`deleted`); to a partner reader they are new versions it still sees. An entry that was
    never public and is deleted is named to nobody but those who saw it."""
    app = apps(export_anonymous=True)
    web = app.test_client()
    services = app.extensions["fhirsrv"]
    partner = Clients(app).headers("partner-reader", "system/*.rs")
    with services.engine.begin() as conn:  # a last change before the exports: their instant
        current = repository.get_current(conn, "HealthcareService", "hs-29")
        assert current is not None
        writes.replace(services, conn, current, service("hs-29", "org-29", "loc-29") | {"name": "x"}, actor=SERVER)
    anonymous_since = export(web, "/fhir/$export")["transactionTime"].replace("+", "%2B")
    partner_since = export(web, "/fhir/$export", partner)["transactionTime"].replace("+", "%2B")
    with services.engine.begin() as conn:
        current = repository.get_current(conn, "Organization", "org-35")
        assert current is not None
        writes.replace(services, conn, current, organization("org-35", "35", "delisted"), actor=SERVER)
        draft = repository.get_current(conn, "HealthcareService", "hs-29-draft")
        assert draft is not None
        writes.delete(services, conn, draft, actor=SERVER)

    def gone(found: dict[str, Any], headers: dict[str, str]) -> set[str]:
        return {
            bundle["entry"][0]["request"]["url"]
            for item in found.get("deleted", [])
            for bundle in lines(web, item["url"], headers)
        }

    found = export(web, f"/fhir/$export?_since={anonymous_since}")
    assert gone(found, {}) == {"Organization/org-35", "Location/loc-35", "HealthcareService/hs-35"}
    assert ids(resources(web, found, {})) == {"HealthcareService/hs-29"}  # the change of that instant
    found = export(web, f"/fhir/$export?_since={partner_since}", partner)
    assert gone(found, partner) == set()
    assert ids(resources(web, found, partner)) == {
        "HealthcareService/hs-29", "Organization/org-35", "Location/loc-35", "HealthcareService/hs-35",
    }  # fmt: skip


def test_an_anonymous_transaction_time_is_not_moved_by_a_write_it_may_not_see(apps: AppFactory) -> None:
    """A draft offer written after the last public change: the anonymous manifest's
    transactionTime stays at that public change (it would tell when the draft was written); an
    administrator's moves to the draft's commit. Either, as the next `_since`, misses nothing."""
    app = apps(export_anonymous=True)
    web = app.test_client()
    services = app.extensions["fhirsrv"]
    admin = Clients(app).headers("regional-admin", "system/*.rs")
    public_before = export(web, "/fhir/$export")["transactionTime"]
    with services.engine.begin() as conn:
        writes.create(services, conn, service("hs-hidden", "org-29", "loc-29", "draft"), "hs-hidden", actor=SERVER)
    assert export(web, "/fhir/$export")["transactionTime"] == public_before
    admin_after = export(web, "/fhir/$export", admin)["transactionTime"]
    assert admin_after > public_before
    with services.engine.begin() as conn:
        current = repository.get_current(conn, "HealthcareService", "hs-29")
        assert current is not None
        writes.replace(services, conn, current, service("hs-29", "org-29", "loc-29") | {"name": "Nouveau"}, actor=SERVER)
    found = export(web, f"/fhir/$export?_since={public_before.replace('+', '%2B')}")
    assert "HealthcareService/hs-29" in ids(resources(web, found))
    assert "HealthcareService/hs-hidden" not in ids(resources(web, found))
    assert found["transactionTime"] > admin_after
    # Nothing listed to the caller since: the instant it asked to resume from, never earlier.
    later = export(web, f"/fhir/$export?_since={admin_after.replace('+', '%2B')}&_type=Location")
    assert later["transactionTime"] >= admin_after


def test_a_large_type_is_split_into_files(apps: AppFactory) -> None:
    app = apps(export_file_lines=2)
    web = app.test_client()
    admin = Clients(app).headers()
    found = export(web, "/fhir/HealthcareService/$export", admin)
    names = [o["url"].rsplit("/", 1)[1] for o in found["output"]]
    assert names == [
        "10-HealthcareService-1.ndjson",
        "10-HealthcareService-2.ndjson",
        "10-HealthcareService-3.ndjson",
    ]
    assert [o["count"] for o in found["output"]] == [2, 2, 1]
    assert len(ids(resources(web, found, admin))) == 5


# ------------------------------------------------------------------------ status and cancel
def test_a_queued_job_says_so_and_can_be_cancelled(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    with _held(app) as held:
        assert held
        status = kick_off(web, "/fhir/$export", admin)
        response = web.get(status, headers=admin)
        assert response.status_code == 202
        assert response.headers["X-Progress"] == "queued" and response.headers["Retry-After"] == "2"
        cancelled = web.delete(status, headers=admin)
        assert cancelled.status_code == 202 and cancelled.get_json()["resourceType"] == "OperationOutcome"
        assert web.get(status, headers=admin).status_code == 404
    worker(app).join(60)  # the pass that wrote the job may still hold the export lock
    assert worker(app).run_pass() is True
    assert _jobs(app) == 0
    assert not (app.extensions["fhirsrv"].settings.export_dir / _job_id(status)).exists()


def test_cancelling_a_finished_job_removes_its_files(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    status = kick_off(web, "/fhir/$export", admin)
    found = manifest(web, status, admin)
    folder = app.extensions["fhirsrv"].settings.export_dir / _job_id(status)
    assert len(list(folder.iterdir())) == len(found["output"])
    assert web.delete(status, headers=admin).status_code == 202
    assert not folder.exists() and _jobs(app) == 0
    assert web.get(status, headers=admin).status_code == 404
    assert web.get(local(found["output"][0]["url"]), headers=admin).status_code == 404
    assert web.delete(status, headers=admin).status_code == 404


def test_cancelling_a_job_just_finished_removes_its_files_though_its_pass_is_ending(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    """The client has the manifest as soon as the job is marked done, while the pass that wrote
    it still holds the export lock for its last look for work: a DELETE then must wait for the
    lock, not leave the files for a pass that may come a minute later, or never."""
    status = kick_off(web, "/fhir/$export", admin)
    manifest(web, status, admin)
    worker(app).join(60)
    folder = app.extensions["fhirsrv"].settings.export_dir / _job_id(status)
    assert folder.exists()
    released = threading.Event()

    def ending_pass() -> None:
        with _held(app) as held:
            assert held
            released.wait(10)
            time.sleep(0.3)  # the pass's last steps, under the lock

    holder = threading.Thread(target=ending_pass)
    holder.start()
    try:
        time.sleep(0.1)  # the lock taken
        released.set()
        assert web.delete(status, headers=admin).status_code == 202
        assert not folder.exists()
    finally:
        released.set()
        holder.join(30)


def test_an_expired_job_is_gone_with_its_files(apps: AppFactory) -> None:
    app = apps(export_ttl_seconds=600)
    web, admin = app.test_client(), Clients(app).headers()
    status = kick_off(web, "/fhir/$export", admin)
    found = manifest(web, status, admin)
    job = export_jobs.get(app.extensions["fhirsrv"].engine, _job_id(status))
    assert job is not None and job.finished is not None
    assert job.expires == job.finished + timedelta(seconds=600)
    engine = app.extensions["fhirsrv"].engine
    with engine.begin() as conn:  # ten minutes later
        conn.execute(update(export_job).values(expires=utcnow() - timedelta(seconds=1)))
    assert web.get(status, headers=admin).status_code == 404
    assert web.get(local(found["output"][0]["url"]), headers=admin).status_code == 404
    worker(app).join(60)  # the pass that wrote the job may still hold the export lock
    assert worker(app).run_pass() is True
    assert _jobs(app) == 0 and not (app.extensions["fhirsrv"].settings.export_dir / _job_id(status)).exists()


def test_a_job_survives_a_restart(apps: AppFactory) -> None:
    first = apps()
    admin = Clients(first).headers()
    with _held(first):  # another process is busy: the job is still queued when this one stops
        status = kick_off(first.test_client(), "/fhir/$export", admin)
        first.extensions["fhirsrv"].engine.dispose()
    second = apps()  # the same database, a new process
    found = manifest(second.test_client(), status, admin)
    assert ids(resources(second.test_client(), found, admin)) == EVERYTHING


def test_a_job_left_running_by_a_dead_process_is_written_again(apps: AppFactory) -> None:
    first = apps()
    admin = Clients(first).headers()
    engine = first.extensions["fhirsrv"].engine
    with _held(first):
        status = kick_off(first.test_client(), "/fhir/$export?_type=Organization", admin)
        with engine.begin() as conn:  # claimed, then the process was killed
            conn.execute(update(export_job).values(status="running", attempts=1, progress="Organization"))
        assert first.test_client().get(status, headers=admin).headers["X-Progress"] == "Organization"
    second = apps()
    found = manifest(second.test_client(), status, admin)
    assert ids(resources(second.test_client(), found, admin)) == {
        "Organization/org-29",
        "Organization/org-35",
    }
    job = export_jobs.get(engine, _job_id(status))
    assert job is not None and job.attempts == 2


def test_writes_go_on_while_an_export_runs(web: FlaskClient, admin: dict[str, str], app: Flask) -> None:
    """A job holds the export lock for its whole run: no write may wait for it."""
    with _held(app):
        created = web.post(
            "/fhir/Organization", json={"resourceType": "Organization", "name": "Pendant l'export"}, headers=admin
        )
        assert created.status_code == 201, created.get_json()


def test_a_job_that_cannot_run_fails_with_an_outcome(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    """A filter on a SearchParameter removed after the kick-off: the job fails, and says why."""
    parameter = f"/fhir/SearchParameter/{ALIAS_SEARCH_PARAMETER['id']}"
    assert web.put(parameter, json=ALIAS_SEARCH_PARAMETER, headers=admin).status_code == 201
    with _held(app):
        status = kick_off(web, "/fhir/$export?_type=Organization&_typeFilter=Organization?alias=x", admin)
        assert web.delete(parameter, headers=admin).status_code in (200, 204)
        assert web.get(parameter, headers=admin).status_code == 410
    response = wait(web, status, admin)
    assert response.status_code == 500
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "exception" and "alias" in issue["diagnostics"]
    assert not (app.extensions["fhirsrv"].settings.export_dir / _job_id(status)).exists()


def test_a_caller_has_a_few_jobs_at_once(web: FlaskClient, admin: dict[str, str], app: Flask) -> None:
    with _held(app):
        for _ in range(export_jobs.MAX_ACTIVE_PER_CALLER):
            kick_off(web, "/fhir/$export", admin)
        refused = web.get("/fhir/$export", headers={**admin, **ASYNC})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        other = Clients(app).headers()
        kick_off(web, "/fhir/$export", other)  # another client is not held back


# ---------------------------------------------------------------------------------- who sees
def test_anonymous_export_is_refused_by_default(web: FlaskClient, app: Flask) -> None:
    response = web.get("/fhir/$export", headers=ASYNC)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _jobs(app) == 0


def test_anonymous_export_when_allowed_is_the_public_view(apps: AppFactory) -> None:
    app = apps(export_anonymous=True)
    web = app.test_client()
    found = export(web, "/fhir/$export")
    assert found["requiresAccessToken"] is False
    exported = resources(web, found)
    conformance = {
        k for k in ids(exported) if k.split("/")[0] in ("CodeSystem", "ValueSet", "SearchParameter")
    }
    assert ids(exported) - conformance == PUBLIC


def test_another_client_cannot_see_a_job(web: FlaskClient, admin: dict[str, str], app: Flask) -> None:
    status = kick_off(web, "/fhir/$export", admin)
    found = manifest(web, status, admin)
    file_url = local(found["output"][0]["url"])
    other = Clients(app).headers()
    for response in (
        web.get(status, headers=other),
        web.get(file_url, headers=other),
        web.delete(status, headers=other),
    ):
        assert response.status_code == 404
    for response in (web.get(status), web.get(file_url), web.delete(status)):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert web.get(status, headers=admin).status_code == 200  # still there for its owner


def test_an_export_is_what_the_callers_search_shows(web: FlaskClient, app: Flask) -> None:
    clients = Clients(app)
    partner = clients.headers("partner-reader", "system/*.rs")
    found = resources(web, export(web, "/fhir/$export", partner), partner)
    # Partners see delisted entries too (they must learn of delistings), never drafts.
    assert ids(found) == PUBLIC | {"HealthcareService/hs-29-delisted"}
    territorial = clients.headers("territorial-admin", departements=["35"])
    found = resources(web, export(web, "/fhir/$export", territorial), territorial)
    assert ids(found) == PUBLIC | {"HealthcareService/hs-29-delisted"}


def test_the_tokens_scopes_bound_the_types(web: FlaskClient, app: Flask) -> None:
    clients = Clients(app)
    services_only = clients.headers("regional-admin", "system/HealthcareService.rs")
    found = export(web, "/fhir/$export", services_only)
    assert [o["type"] for o in found["output"]] == ["HealthcareService"]
    refused = web.get("/fhir/$export?_type=Organization", headers={**services_only, **ASYNC})
    assert refused.status_code == 403


def test_the_audit_trail_is_exported_when_named_only(
    web: FlaskClient, admin: dict[str, str], app: Flask
) -> None:
    changed = web.get("/fhir/Practitioner/pr-1", headers=admin).get_json()
    assert (
        web.put("/fhir/Practitioner/pr-1", json=changed | {"gender": "female"}, headers=admin).status_code
        == 200
    )
    assert "AuditEvent" not in {o["type"] for o in export(web, "/fhir/$export", admin)["output"]}
    found = export(web, "/fhir/$export?_type=AuditEvent", admin)
    assert [o["type"] for o in found["output"]] == ["AuditEvent"]
    partner = Clients(app).headers("partner-reader", "system/*.rs")
    assert web.get("/fhir/$export?_type=AuditEvent", headers={**partner, **ASYNC}).status_code == 403
