"""The `fhirsrv` command: serve, load, db, reindex, seed, clients, outbox."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path
from typing import NoReturn

import click

from fhirsrv.cli_common import DATABASE_IN_USE, remember_database
from fhirsrv.settings import Settings, SettingsError

log = logging.getLogger("fhirsrv")
# Python threads of the single process (waitress): its first default, kept.
SINGLE_PROCESS_THREADS = 8
# Python threads of each granian worker process: with 4, two workers read 15-20% more a second
# at 16 connections than with 8, and their searches' p95 fell by a quarter (README, "Threads a
# worker"): the threads of a worker take the interpreter's lock in turn, and each more of them
# is one more database connection busy on the same cores. Half of them may wait on the heavy
# pool (serving.heavy_slots), so two stay for cheap requests.
WORKER_THREADS = 4


def _settings(database: str | None, **overrides: object) -> Settings:
    """The environment's settings (parsed once, by `main`) with the command's flags on top.

    A flag left unset is None and keeps the environment's value.
    """
    parsed = click.get_current_context().find_object(Settings)
    base = parsed if parsed is not None else Settings.from_env()
    settings = base.overridden(database_url=database, **overrides)
    remember_database(settings)
    return settings


def _services(settings: Settings):  # type: ignore[no-untyped-def]
    from fhirsrv.wiring import build_services

    return build_services(settings)


class _Commands(click.Group):
    """The command group, turning a bad setting into one line on stderr and exit code 2, and an
    unreachable database into one line and exit code 1.

    Settings are parsed before any command runs (`fhirsrv clients` included); a misspelt
    variable must stop the process with its name, not a traceback nor a silently wrong default.
    A stopped database is an operator's everyday fault: it deserves a sentence naming the
    database, not 144 lines of driver traceback.
    """

    def invoke(self, ctx: click.Context) -> object:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except SQLAlchemyError as exc:
            message = _database_fault_line(ctx, exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


def _database_fault_line(ctx: click.Context, exc: Exception) -> str | None:
    """One line for a database fault (which database, why), None for any other error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from fhirsrv.storage.engine import normalise_url
    from fhirsrv.storage.faults import unavailability

    fault = unavailability(exc)
    if fault is None:
        return None
    database = ctx.meta.get(DATABASE_IN_USE)
    where = f" {make_url(normalise_url(database)).render_as_string(hide_password=True)}" if database else ""
    # The driver's own words (refused, timeout expired...): at the command line, about the
    # connection, they say what to fix. Collapsed to one line.
    detail = " ".join(str(exc.orig).split()) if isinstance(exc, DBAPIError) else ""
    return f"database{where} unavailable: {fault.reason}" + (f" ({detail})" if detail else "")


@click.group(cls=_Commands)
@click.option("-v", "--verbose", is_flag=True, help="Log SQL-free debug information.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """fhirsrv: FHIR R4 server of a regional directory of cancer supportive care (SOS)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not verbose:
        # Every command migrates its database first; Alembic's plugin and revision lines would
        # bury what the command prints (a client's JSON, a secret shown once). Warnings remain.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    # Parsed here, before a command imports or opens anything: a bad variable stops every command.
    ctx.obj = Settings.from_env()


def _unlistenable(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, None if it can.

    Asked before the first start loads the demo region (a minute on a small machine), so a
    busy port costs one line at once, not that wait and a traceback. Each address the host
    resolves to is tried, as waitress will, with the SO_REUSEADDR it sets."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot listen on {host}:{port}: {exc.strerror} (another server? choose --port)"
    return None


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--database", default=None, help="SQLAlchemy URL (default: FHIRSRV_DATABASE_URL or embedded SQLite)."
)
@click.option("--no-demo", is_flag=True, help="Do not load the demo region into an empty database.")
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help=f"Per process (default: {SINGLE_PROCESS_THREADS} in the single process, {WORKER_THREADS} a worker process).",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Processes (default: FHIRSRV_WORKERS, else 1). 1: one waitress process; 2 or more: granian.",
)
def serve(
    host: str, port: int, database: str | None, no_demo: bool, threads: int | None, workers: int | None
) -> None:
    """Serve the FHIR API under /fhir."""
    from fhirsrv.interactions.load import LoadError, load_initial_content
    from fhirsrv.interactions.reindex import outdated
    from fhirsrv.logformat import configure

    settings = _settings(database, load_demo=False if no_demo else None, workers=workers)
    reason = _unlistenable(host, port)
    if reason is not None:
        _fail(reason)
    configure(settings.log_format)  # FHIRSRV_LOG_FORMAT: json lines by default
    services = _services(settings)
    try:
        report = load_initial_content(services, demo=settings.load_demo)
    except LoadError as exc:  # nothing of it was kept: the next start tries again
        _fail(f"the initial content could not be loaded, nothing of it was kept: {exc}")
    if report is not None:
        log.info(
            "empty database: loaded %s resources from %s files (%s)",
            sum(report.counts.values()),
            report.files,
            ", ".join(f"{t} {n}" for t, n in sorted(report.counts.items())),
        )
    if outdated(services):
        log.warning(
            "the search indexes were built by an earlier version's rules: searches may miss matches "
            "until `fhirsrv db upgrade` rebuilds them"
        )
    if settings.workers > 1:
        from fhirsrv.serving import ListenError, serve_workers

        try:
            serve_workers(settings, services, host, port, threads or WORKER_THREADS)
        except ListenError as exc:  # taken since the check, by another process
            _fail(str(exc))
        return
    from fhirsrv.app import create_app, make_server  # not before: it imports prometheus-client

    app = create_app(settings, services)
    try:
        server = make_server(app, settings, host, port, threads or SINGLE_PROCESS_THREADS)
    except OSError as exc:  # taken since the check, by another process
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    from fhirsrv.workflow import runner

    runner.start(services)  # the yearly sweep and mail delivery, when FHIRSRV_SWEEP_INTERVAL_SECONDS is set
    from fhirsrv.sync import delivery

    delivery.start(services)  # rest-hook Subscriptions, unless FHIRSRV_SUBSCRIPTION_DELIVERY is off
    from fhirsrv.api.bulk_export import keep_exporting

    keep_exporting(app)  # $export jobs left by a stopped process, and expired export files
    log.info(
        "fhirsrv serving http://%s:%s/fhir (database %s)", host, port, services.engine.url.render_as_string()
    )
    server.run()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--database", default=None)
def load(paths: tuple[Path, ...], database: str | None) -> None:
    """Load JSON resources, Bundles and NDJSON files or folders (one transaction per file)."""
    from fhirsrv.interactions.load import LoadError, load_paths

    services = _services(_settings(database))
    try:
        report = load_paths(services, list(paths))
    except LoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for res_type, count in sorted(report.counts.items()):
        click.echo(f"{res_type}\t{count}")
    click.echo(
        f"total\t{sum(report.counts.values())} written, {report.unchanged} unchanged, {report.files} files"
    )


@main.command()
@click.option("--database", default=None)
@click.option("--type", "res_type", default=None, help="Only this resource type.")
def reindex(database: str | None, res_type: str | None) -> None:
    """Rebuild the search indexes (after a SearchParameter was added or changed)."""
    from fhirsrv.interactions.reindex import reindex as rebuild

    count = rebuild(_services(_settings(database)), res_type)
    click.echo(json.dumps({"reindexed": count}))


@main.command()
@click.option("--database", default=None)
@click.option(
    "--now",
    default=None,
    help="Run as if it were this instant (ISO 8601, UTC): to rehearse a sweep, or in tests.",
)
def sweep(database: str | None, now: str | None) -> None:
    """The yearly verification: reminders, then delisting (idempotent; safe from cron every hour)."""
    from datetime import UTC, datetime

    from fhirsrv.workflow import runner
    from fhirsrv.workflow.sweep import sweep as run_sweep

    services = _services(_settings(database))
    when = datetime.fromisoformat(now).astimezone(UTC).replace(tzinfo=None) if now else None
    if when is None:
        report = runner.run_once(services)
    else:
        report = run_sweep(services, runner.procedure(services), when)
    click.echo(
        json.dumps(
            {
                "examined": report.examined,
                "asked_to_verify": report.requested,
                "second_reminders": report.second_reminders,
                "delisted": report.delisted,
                "left_for_next_run": report.skipped,
                "another_sweep_was_running": report.locked,
                "seconds": report.seconds,
            }
        )
    )


@main.group()
def seed() -> None:
    """Demo and benchmark directories."""


@seed.command("generate")
@click.option("--resources", "count", type=int, required=True, help="About how many resources to write.")
@click.option("--seed", "seed_value", type=int, default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def seed_generate(count: int, seed_value: int, out_dir: Path) -> None:
    """Write a directory of about N resources as NDJSON (load it with `fhirsrv load DIR`)."""
    from fhirsrv.seeding.generate import generate

    counts = generate(resources=count, seed=seed_value, out_dir=out_dir)
    click.echo(json.dumps(counts))


def _attach_clients() -> None:
    """`fhirsrv clients add|list|revoke` (OAuth clients of the administration API)."""
    from fhirsrv.cli_clients import clients

    main.add_command(clients)


def _attach_db() -> None:
    """`fhirsrv db upgrade|backup|restore` (schema, and copies of the database)."""
    from fhirsrv.cli_db import db

    main.add_command(db)


def _attach_outbox() -> None:
    """`fhirsrv outbox list|retry|deliver` (e-mails of the inclusion procedure)."""
    from fhirsrv.cli_outbox import outbox

    main.add_command(outbox)


_attach_clients()
_attach_db()
_attach_outbox()


if __name__ == "__main__":
    main()
