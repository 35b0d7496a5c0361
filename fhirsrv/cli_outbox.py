"""`fhirsrv outbox`: look at, retry and deliver the e-mails of the inclusion procedure.

Output never contains an address nor a message's context (which may hold a client secret): an
operator sees what was sent about which entry, and why a message failed, not to whom.
"""

from __future__ import annotations

import json
import sys

import click

from fhirsrv.cli_common import DATABASE, engine_for, settings_with


@click.group()
def outbox() -> None:
    """E-mails of the inclusion procedure, queued with their transitions (SMTP: FHIRSRV_SMTP_*)."""


@outbox.command("list")
@click.option(
    "--status", default=None, type=click.Choice(["pending", "sending", "sent", "failed"]), help="Only these."
)
@DATABASE
def list_(status: str | None, database: str | None) -> None:
    """One JSON line per message: id, template, entry, status, attempts, next_attempt, last_error."""
    from fhirsrv.workflow.outbox import list_messages

    engine = engine_for(database)
    try:
        messages = list_messages(engine, status)
    finally:
        engine.dispose()
    for message in messages:
        click.echo(json.dumps(message.public_view(), ensure_ascii=False))


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@DATABASE
def retry_(ids: tuple[int, ...], database: str | None) -> None:
    """Put failed messages (these ids, or every failed one) back to pending, due now."""
    from fhirsrv.workflow.outbox import retry

    engine = engine_for(database)
    try:
        retried = retry(engine, list(ids) if ids else None)
    finally:
        engine.dispose()
    click.echo(json.dumps({"retried": retried}))
    skipped = sorted(set(ids) - set(retried))
    if skipped:
        click.echo(f"error: not failed (or unknown): {', '.join(map(str, skipped))}", err=True)
        sys.exit(1)


@outbox.command("deliver")
@DATABASE
def deliver(database: str | None) -> None:
    """Send the messages that are due, once (run it from a timer); prints sent/retried/failed."""
    from fhirsrv.workflow.mail import Mailer
    from fhirsrv.workflow.outbox import deliver_due

    settings = settings_with(database)
    if not settings.smtp_host:
        click.echo("warning: FHIRSRV_SMTP_HOST is not set: nothing is sent, messages stay queued", err=True)
    engine = engine_for(database)
    try:
        counts = deliver_due(engine, Mailer.from_settings(settings), settings)
    finally:
        engine.dispose()
    click.echo(json.dumps(counts))
