"""The bulk export's own table: one row per `$export` job, so that a job outlives the process
that accepted it (a restart, a deploy) and any process of the deployment can answer its status.

The row records who asked (the kick-off's principal, as its token said then): the export is
run as that caller and its status and files are served to that caller only. Its files live in
FHIRSRV_EXPORT_DIR/<id>/, listed here once the job is done."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text

from fhirsrv.storage.schema import metadata

export_job = Table(
    "export_job",
    metadata,
    # 32 random hex digits: the status and file URLs carry it, so it must not be guessable.
    Column("id", String(64), primary_key=True),
    # queued | running | done | failed | cancelled
    Column("status", String(16), nullable=False),
    # The OAuth client id of the caller ('' for an anonymous caller or the server itself), and
    # the whole principal as JSON (role, scopes, territory): what the export may show.
    Column("owner", String(64), nullable=False),
    Column("principal", Text, nullable=False),
    # The caller's network address: anonymous callers' active jobs are counted per address.
    Column("address", String(64), nullable=True),
    # The kick-off URL (the manifest's `request`) and its parsed parameters (JSON).
    Column("request", Text, nullable=False),
    Column("parameters", Text, nullable=False),
    Column("created", DateTime, nullable=False),
    Column("started", DateTime, nullable=True),
    Column("finished", DateTime, nullable=True),
    # Once the job has ended (done or failed), after this instant it is gone with its files
    # (status 404): set when it ends, to then plus FHIRSRV_EXPORT_TTL_SECONDS.
    Column("expires", DateTime, nullable=False),
    # Times a process started working it: a job that keeps killing its process stops there.
    Column("attempts", Integer, nullable=False, server_default="0"),
    # The instant of the export's snapshot (the manifest's transactionTime).
    Column("transaction_time", DateTime, nullable=True),
    # Human-readable progress while running (X-Progress), the files once done (JSON), and why
    # it failed (never stored content).
    Column("progress", String(200), nullable=True),
    Column("outputs", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_export_job_status_created", "status", "created"),
    Index("ix_export_job_owner_status", "owner", "status"),
)
