"""Bulk Data `$export` over HTTP (FHIR Bulk Data Access 2.0, the asynchronous request pattern).

- kick-off: `GET|POST [base]/$export` and `[base]/{type}/$export`, with `Prefer: respond-async`
  -> 202, `Content-Location: [base]/$export-status/{job}`;
- status: `GET [base]/$export-status/{job}` -> 202 with `X-Progress` and `Retry-After` while
  it runs, 200 with the manifest when done, 500 with an OperationOutcome when it failed;
  `DELETE` cancels it (202) and its files are removed;
- files: `GET [base]/$export-file/{job}/{name}.ndjson` (application/fhir+ndjson);
- `[base]/Group/{id}/$export`: 400, this directory holds no Group (no cohort of patients).

HTTP only: who may export what, and the jobs themselves, are fhirsrv/sync's business.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request, send_file
from werkzeug.http import http_date

from fhirsrv.api import negotiation, outcome, request_facts
from fhirsrv.api.routes import base_url, query_params, request_info, services
from fhirsrv.errors import BadRequest, Issue, NotFound
from fhirsrv.interactions.context import Services
from fhirsrv.interactions.operations import OperationCall
from fhirsrv.interactions.resources import check_type, parse_json
from fhirsrv.storage.jsonfmt import format_instant
from fhirsrv.sync import export_jobs as jobs
from fhirsrv.sync.export_request import check_caller, parse_kickoff
from fhirsrv.sync.export_runner import ExportWorker

bulk = Blueprint("bulk", __name__)
WORKER = "fhirsrv.export_worker"
NDJSON = "application/fhir+ndjson"
NDJSON_TYPES = (NDJSON, "application/ndjson")
# Interactions as the request log and the metrics name them (api/request_facts.py).
_INTERACTIONS = {
    "bulk.system_export": "operation",
    "bulk.type_export": "operation",
    "bulk.group_export": "operation",
    "bulk.export_status": "export-status",
    "bulk.export_file": "export-file",
}


def install(app: Flask, services: Services) -> None:
    """The routes, and this app's export worker (started by the first job or poll, or at once
    by `keep_exporting` in `fhirsrv serve`)."""
    app.register_blueprint(bulk, url_prefix="/fhir")
    app.extensions[WORKER] = ExportWorker(services)
    for endpoint, interaction in _INTERACTIONS.items():
        request_facts.name_endpoint(app, endpoint, interaction)


def keep_exporting(app: Flask) -> None:
    """For a serving process: resume jobs a stopped process left, and remove expired files,
    without waiting for a client to poll (export_runner.py)."""
    worker(app).keep_running()


def worker(app: Flask | None = None) -> ExportWorker:
    return (app or current_app).extensions[WORKER]


# ----------------------------------------------------------------------------------- kick-off
@bulk.route("/$export", methods=["GET", "POST"])
def system_export() -> Response:
    return _kickoff(None)


@bulk.route("/<res_type>/$export", methods=["GET", "POST"])
def type_export(res_type: str) -> Response:
    check_type(res_type)
    return _kickoff(res_type)


@bulk.route("/Group/<group_id>/$export", methods=["GET", "POST"])
def group_export(group_id: str) -> Response:
    raise BadRequest(
        "Group-level $export is not offered: this directory holds no Group resources (no cohort of "
        "patients). Use [base]/$export, or [base]/[type]/$export, with _type and _typeFilter",
        code="not-supported",
    )


def _respond_async() -> bool:
    return any(
        part.strip().lower() == "respond-async"
        for header in request.headers.getlist("Prefer")
        for part in header.split(",")
    )


def _parameters() -> list[tuple[str, str]]:
    """The kick-off's parameters: the query string, plus a POST body's Parameters (each
    `value[x]` as its text, as a query would give it)."""
    params = query_params()
    if request.method != "POST":
        return params
    negotiation.check_content_type(request)
    body = parse_json(request.get_data())
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("A POST $export takes a Parameters resource")
    call = OperationCall.from_body(None, None, body, [])
    for param in call.parameters:
        name = str(param.get("name", ""))
        values = [v for k, v in param.items() if k.startswith("value")]
        if len(values) != 1 or not isinstance(values[0], str | int | bool):
            params.append((name, ""))  # judged, and refused, with the others
            continue
        params.append((name, str(values[0]).lower() if isinstance(values[0], bool) else str(values[0])))
    return params


def _kickoff_url() -> str:
    """The kick-off as the manifest's `request` gives it: a GET's with its query, a POST's
    without (its parameters were in the body), on the public base."""
    url = base_url() + request.path.removeprefix("/fhir")
    if request.method == "GET" and request.query_string:
        url += "?" + request.query_string.decode("utf-8", "replace")
    return url


def _kickoff(level_type: str | None) -> Response:
    svc = services()
    info = request_info()
    check_caller(svc, info.principal)
    if not _respond_async():
        raise BadRequest("$export is asynchronous: send the header 'Prefer: respond-async'")
    export = parse_kickoff(
        svc, info.principal, level_type, _parameters(), lenient=info.prefer_handling == "lenient"
    )
    job = jobs.create(svc.engine, svc.settings, info.principal, _kickoff_url(), export)
    worker().wake()
    status = f"{base_url()}/$export-status/{job.id}"
    return outcome.respond(
        202,
        [Issue("information", "informational", f"Export accepted: its status is at {status}")],
        {"Content-Location": status},
    )


# ------------------------------------------------------------------------------------- status
@bulk.route("/$export-status/<job_id>", methods=["GET", "DELETE"])
def export_status(job_id: str) -> Response:
    svc = services()
    job = jobs.for_caller(svc.engine, job_id, request_info().principal)
    if request.method == "DELETE":
        jobs.cancel(svc.engine, job.id)
        worker().tidy_now()
        return outcome.respond(
            202, [Issue("information", "informational", "Export cancelled; its files are removed")]
        )
    if job.status in jobs.ACTIVE:
        worker().wake()  # a job a stopped process left is resumed by whoever is asked about it
        response = Response(status=202)
        response.headers["X-Progress"] = _progress(job)
        response.headers["Retry-After"] = str(jobs.RETRY_AFTER_SECONDS)
        return response
    if job.status == jobs.FAILED:
        return outcome.respond(500, [Issue("error", "exception", job.error or "The export failed")])
    response = Response(orjson.dumps(_manifest(job)), status=200, content_type="application/json")
    response.headers["Expires"] = http_date(job.expires)
    return response


def _progress(job: jobs.ExportJob) -> str:
    if job.status == jobs.QUEUED:
        return "queued"
    # Header values are latin-1: the progress names types and counts only.
    return (job.progress or "running").encode("latin-1", "replace").decode("latin-1")


def _manifest(job: jobs.ExportJob) -> dict[str, Any]:
    base = base_url()

    def items(kind: str) -> list[dict[str, Any]]:
        return [
            {"type": f.res_type, "url": f"{base}/$export-file/{job.id}/{f.name}", "count": f.count}
            for f in job.files
            if f.kind == kind
        ]

    assert job.transaction_time is not None
    manifest: dict[str, Any] = {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": job.requires_token,
        "output": items("output"),
        "error": items("error"),
    }
    deleted = items("deleted")
    if deleted:
        manifest["deleted"] = deleted
    return manifest


# -------------------------------------------------------------------------------------- files
@bulk.get("/$export-file/<job_id>/<name>")
@negotiation.produces(*NDJSON_TYPES, "application/x-ndjson")
def export_file(job_id: str, name: str) -> Response:
    svc = services()
    job = jobs.for_caller(svc.engine, job_id, request_info().principal)
    found = job.file(name) if job.status == jobs.DONE else None
    path = jobs.job_dir(svc.settings, job.id) / name
    if found is None or not path.is_file():
        raise NotFound(f"Export job {job.id} has no file '{name[:80]}'")
    response = send_file(path, mimetype=NDJSON, conditional=False, etag=False, max_age=0)
    response.headers["Expires"] = http_date(job.expires)
    return response
