"""The outbox: e-mails written with the transition that causes them, delivered later by SMTP.

Why an outbox rather than sending from the transition:
- a message row is inserted in the transition's own transaction (`enqueue`), so it exists if
  and only if the transition committed: a rolled-back transition sends nothing, and a committed
  one cannot lose its message;
- the transition never waits for, nor fails because of, the SMTP server: `deliver_due` sends
  later, retrying with exponential backoff, and a message that keeps failing ends `failed`,
  still stored and retryable (`fhirsrv outbox retry`);
- a `dedupe_key` makes enqueueing idempotent, so a sweep that runs twice queues each reminder
  once.

Delivery guarantees. `claim_due` moves due messages to `sending` in one short transaction that
two processes cannot both win (`FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the write
transaction is `BEGIN IMMEDIATE`, one writer at a time), so two delivery loops never send the
same message. A claim is a lease: a message left `sending` past it (the process died during the
send) is claimed again. SMTP delivery is therefore at-least-once: the only window for a duplicate
is a crash (or a lost database) between the server accepting the message and the `sent` update,
and the Message-ID stays the same across attempts so a receiving system may fold the duplicates.

Privacy: addresses are stored in `recipients` and go to the SMTP server, nowhere else: no log
record, error text (`last_error`) or CLI output contains one. Context values that grant access
(`SECRET_KEYS`, e.g. a client secret) are blanked once the message is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhirsrv.settings import Settings
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import dumps, loads, utcnow
from fhirsrv.storage.schema import outbox
from fhirsrv.workflow.mail import Mailer, MailError, placeholders, render, scrub_addresses, template_names

log = logging.getLogger(__name__)

STATUSES = ("pending", "sending", "sent", "failed")
# Backoff doubles from settings.mail_retry_base_seconds up to this.
MAX_RETRY_DELAY = timedelta(hours=6)
# Messages claimed per transaction: small, so a claim's lease covers the sends that follow it.
CLAIM_BATCH = 10
# How long a claimed message may stay `sending` before another pass takes it back: at least
# this, and more when SMTP timeouts are long (see `_lease`).
SENDING_LEASE = timedelta(minutes=15)
# SMTP operations of one send, each bounded by settings.smtp_timeout (connect, EHLO, STARTTLS,
# EHLO, AUTH, MAIL, RCPT..., DATA, QUIT), with room for a few recipients.
SMTP_STEPS_PER_SEND = 16
# Context values that grant access: kept until the message is sent, then blanked.
SECRET_KEYS = frozenset({"client_secret", "confirm_url"})
REDACTED = "(removed once sent)"
LAST_ERROR_MAX = 1000
# Placeholders filled at delivery when the caller did not give them (see `_render_context`).
DERIVED_PLACEHOLDERS = frozenset({"entry_url"})


@dataclass(frozen=True)
class Message:
    """One outbox row. Recipients and context stay out of the repr, so a logged or printed
    message never shows an address or a secret."""

    id: int
    created: datetime
    template: str
    entry: str | None
    dedupe_key: str | None
    status: str
    attempts: int
    next_attempt: datetime
    last_error: str | None
    sent: datetime | None
    recipients: tuple[str, ...] = field(repr=False)
    context: Mapping[str, str] = field(repr=False)

    def public_view(self) -> dict[str, Any]:
        """What the CLI shows: no address, no context (it may hold a secret)."""
        return {
            "id": self.id,
            "template": self.template,
            "entry": self.entry,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt.isoformat(),
            "last_error": self.last_error,
        }

    @property
    def token(self) -> str:
        """Fixed per message (its Message-ID's local part): identical across retries."""
        return f"fhirsrv-outbox-{self.id}-{self.created:%Y%m%d%H%M%S%f}"


# ------------------------------------------------------------------------------------ enqueue


def enqueue(
    conn: Connection,
    *,
    template: str,
    recipients: list[str],
    context: dict[str, str],
    entry: str | None = None,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Queue a message in the caller's transaction; False (nothing stored) when `dedupe_key` exists.

    Raises ValueError for an unknown template, no or malformed recipients, a context that is not
    strings or lacks one of the template's placeholders: those are programming errors, caught by
    the transition's tests, not by a user waiting for a mail that never comes. `entry_url` may be
    left out when `entry` is given: delivery derives it from settings.base_url.

    A duplicate key never breaks the caller's transaction: the insert runs in a SAVEPOINT, so
    the unique violation of a concurrent enqueue (PostgreSQL aborts a transaction on any error)
    rolls back the savepoint only.
    """
    addresses = _checked_recipients(recipients)
    _check_context(template, context, entry)
    if entry is not None and len(entry) > outbox.c.entry.type.length:
        raise ValueError(f"entry reference longer than {outbox.c.entry.type.length} characters")
    if dedupe_key is not None and not 0 < len(dedupe_key) <= outbox.c.dedupe_key.type.length:
        raise ValueError(f"dedupe_key must have 1 to {outbox.c.dedupe_key.type.length} characters")
    when = _naive_utc(now)
    if dedupe_key is not None and _key_exists(conn, dedupe_key):
        log.debug("outbox: %s for %s already queued (same key), not queued again", template, entry)
        return False
    values = {
        "created": when,
        "template": template,
        "recipients": dumps(addresses),
        "context": dumps(dict(context)),
        "entry": entry,
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt": when,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(outbox).values(**values))
    except IntegrityError:
        if dedupe_key is None:
            raise
        # Another transaction committed the same key between the check and the insert.
        log.debug("outbox: %s for %s queued concurrently (same key), not queued again", template, entry)
        return False
    log.info("outbox: %s for %s queued", template, entry)
    return True


def _key_exists(conn: Connection, dedupe_key: str) -> bool:
    found = conn.execute(select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key).limit(1))
    return found.first() is not None


def _checked_recipients(recipients: Iterable[str]) -> list[str]:
    """The recipients without duplicates, each a plausible address; errors name positions only."""
    if isinstance(recipients, str):
        raise ValueError("recipients must be a list of addresses, not one string")
    unique: list[str] = []
    for position, address in enumerate(recipients, start=1):
        if not isinstance(address, str):
            raise ValueError(f"recipient {position} is not a string")
        local, at, domain = address.partition("@")
        if (
            not (at and local and domain)
            or any(c.isspace() or ord(c) < 32 for c in address)
            or "," in address
        ):
            raise ValueError(f"recipient {position} is not an e-mail address")
        if address not in unique:
            unique.append(address)
    if not unique:
        raise ValueError("a message needs at least one recipient")
    return unique


def _check_context(template: str, context: Mapping[str, str], entry: str | None) -> None:
    if template not in template_names():
        raise ValueError(f"no mail template {template!r}; known: {', '.join(sorted(template_names()))}")
    if not isinstance(context, Mapping):
        raise ValueError("context must be a mapping of strings")
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"context value {key!r} must be a string")
    derivable = DERIVED_PLACEHOLDERS if entry is not None else frozenset()
    missing = placeholders(template) - set(context) - derivable
    if missing:
        raise ValueError(f"mail template {template!r} needs {', '.join(sorted(missing))} in its context")


# -------------------------------------------------------------------------------------- claim


def claim_due(
    engine: Engine,
    now: datetime,
    limit: int,
    *,
    lease: timedelta = SENDING_LEASE,
    max_attempts: int | None = None,
) -> list[Message]:
    """Move up to `limit` due messages to `sending` and return them; no two callers get the same.

    Due: pending with next_attempt <= now, or left `sending` past its lease by a process that
    stopped mid-send (taken again, so it may arrive twice: see the module docstring). Each claim
    counts as an attempt, so a message that crashes its sender every time still runs out of
    attempts: a stale one already at `max_attempts` is marked failed instead of claimed.
    """
    now = _naive_utc(now)
    claimed: list[Message] = []
    with write_transaction(engine) as conn:
        rows = (
            conn.execute(
                select(outbox)
                .where(outbox.c.status.in_(("pending", "sending")), outbox.c.next_attempt <= now)
                .order_by(outbox.c.next_attempt, outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .mappings()
            .all()
        )
        stale_exhausted = [
            r["id"]
            for r in rows
            if r["status"] == "sending" and max_attempts is not None and r["attempts"] >= max_attempts
        ]
        if stale_exhausted:
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(stale_exhausted),
                    outbox.c.status == "sending",
                    outbox.c.next_attempt <= now,
                )
                .values(status="failed", last_error="interrupted while sending (the process stopped?)")
            )
            for message_id in stale_exhausted:
                log.warning(
                    "outbox: message %s was interrupted while sending, no attempt left: failed", message_id
                )
        for row in rows:
            if row["id"] in stale_exhausted:
                continue
            # Guarded by what made the row due, so that even without the row lock (a database
            # that ignores FOR UPDATE) a row another caller claimed meanwhile is not taken twice.
            taken = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row["id"],
                    outbox.c.status == row["status"],
                    outbox.c.attempts == row["attempts"],
                    outbox.c.next_attempt <= now,
                )
                .values(status="sending", attempts=row["attempts"] + 1, next_attempt=now + lease)
            )
            if taken.rowcount != 1:
                continue
            if row["status"] == "sending":
                log.warning(
                    "outbox: message %s (%s) was left sending by a stopped process; sending it again "
                    "(it may arrive twice)",
                    row["id"],
                    row["template"],
                )
            claimed.append(
                _message(dict(row, status="sending", attempts=row["attempts"] + 1, next_attempt=now + lease))
            )
    return claimed


# ------------------------------------------------------------------------------------ deliver


def deliver_due(
    engine: Engine,
    mailer: Mailer,
    settings: Settings,
    now: datetime | None = None,
    *,
    limit: int = 500,
) -> dict[str, int]:
    """One delivery pass: send the due messages (at most `limit`); counts sent/retried/failed.

    Without an SMTP host nothing is claimed: messages stay pending until mail is configured.
    A failure is recorded on its message (pending again with a later next_attempt, or failed
    after settings.mail_max_attempts or a permanent refusal) and never raised: one bad message
    does not stop the others. Database errors do propagate (the message then stays `sending`
    until its lease ends, and is retried).

    `now` fixes the clock of the whole pass (tests); by default each step reads the time.
    """
    counts = {"sent": 0, "retried": 0, "failed": 0}
    if not mailer.enabled:
        log.debug("outbox: no SMTP host configured, nothing delivered")
        return counts
    clock: Callable[[], datetime] = (lambda: _naive_utc(now)) if now is not None else utcnow
    lease = _lease(settings)
    handled = 0
    while handled < limit:
        batch = claim_due(
            engine,
            clock(),
            min(CLAIM_BATCH, limit - handled),
            lease=lease,
            max_attempts=settings.mail_max_attempts,
        )
        if not batch:
            break
        for message in batch:
            counts[_deliver_one(engine, mailer, settings, message, clock)] += 1
        handled += len(batch)
    if any(counts.values()):
        log.info("outbox: %(sent)s sent, %(retried)s to retry, %(failed)s failed", counts)
    return counts


def _lease(settings: Settings) -> timedelta:
    """Long enough for a whole claimed batch to be sent at the slowest the timeouts allow."""
    slowest = timedelta(seconds=settings.smtp_timeout * SMTP_STEPS_PER_SEND * CLAIM_BATCH)
    return max(SENDING_LEASE, slowest)


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base..., at most 6 h."""
    exponent = min(max(attempts - 1, 0), 30)
    return min(timedelta(seconds=settings.mail_retry_base_seconds * 2**exponent), MAX_RETRY_DELAY)


def _deliver_one(
    engine: Engine, mailer: Mailer, settings: Settings, message: Message, clock: Callable[[], datetime]
) -> str:
    try:
        rendered = render(message.template, _render_context(message, settings))
    except (ValueError, OSError) as exc:
        # The template was removed or broken by a later version: no retry can fix it.
        return _record_failure(engine, settings, message, f"template: {exc}", True, clock())
    try:
        refused = mailer.send(
            list(message.recipients),
            rendered.subject,
            rendered.body,
            message_id=mailer.message_id(message.token),
        )
    except MailError as exc:
        return _record_failure(engine, settings, message, str(exc), exc.permanent, clock())
    note = f"{refused} recipient(s) refused by the server" if refused else None
    context = {k: (REDACTED if k in SECRET_KEYS else v) for k, v in message.context.items()}
    values = {"status": "sent", "sent": clock(), "last_error": note, "context": dumps(context)}
    if not _update_claimed(engine, message, values):
        log.warning("outbox: message %s was taken back by another pass while being sent", message.id)
    if refused:
        log.warning(
            "outbox: message %s (%s) sent, %s recipient(s) refused", message.id, message.template, refused
        )
    else:
        log.info("outbox: message %s (%s) for %s sent", message.id, message.template, message.entry)
    return "sent"


def _record_failure(
    engine: Engine, settings: Settings, message: Message, error: str, permanent: bool, now: datetime
) -> str:
    error = _scrub(error, message.recipients)
    if permanent or message.attempts >= settings.mail_max_attempts:
        _update_claimed(engine, message, {"status": "failed", "last_error": error})
        log.warning(
            "outbox: message %s (%s) failed after %s attempt(s): %s",
            message.id,
            message.template,
            message.attempts,
            error,
        )
        return "failed"
    next_attempt = now + retry_delay(settings, message.attempts)
    _update_claimed(engine, message, {"status": "pending", "next_attempt": next_attempt, "last_error": error})
    log.warning(
        "outbox: message %s (%s) not sent (attempt %s of %s), next at %s: %s",
        message.id,
        message.template,
        message.attempts,
        settings.mail_max_attempts,
        next_attempt.isoformat(timespec="seconds"),
        error,
    )
    return "retried"


def _update_claimed(engine: Engine, message: Message, values: dict[str, Any]) -> bool:
    """Update the message only if this pass still holds its claim (its attempt count is a fencing
    token: a pass that took it back after the lease counted one more)."""
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(outbox)
            .where(
                outbox.c.id == message.id, outbox.c.status == "sending", outbox.c.attempts == message.attempts
            )
            .values(**values)
        )
        return result.rowcount == 1


def _render_context(message: Message, settings: Settings) -> dict[str, str]:
    """The stored context, plus `entry_url` from the public base when the caller left it out."""
    context = dict(message.context)
    if "entry_url" not in context and message.entry:
        base = settings.base_url.rstrip("/")
        context["entry_url"] = f"{base}/{message.entry}" if base else message.entry
    return context


def _scrub(text: str, recipients: Iterable[str]) -> str:
    """An error text fit to store and print: no address (even one the pattern would miss), short."""
    for address in recipients:
        text = text.replace(address, "<address>")
    return scrub_addresses(text)[:LAST_ERROR_MAX]


# ---------------------------------------------------------------------------------- CLI helpers


def list_messages(engine: Engine, status: str | None = None) -> list[Message]:
    """Every message (of one status), oldest first."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    query = select(outbox).order_by(outbox.c.id)
    if status is not None:
        query = query.where(outbox.c.status == status)
    with engine.connect() as conn:
        return [_message(dict(row)) for row in conn.execute(query).mappings()]


def retry(engine: Engine, ids: Iterable[int] | None = None, now: datetime | None = None) -> list[int]:
    """Put failed messages (these ids, or all) back to pending, due now, with a fresh series of
    attempts: an administrator retries once the cause (a server, a password) is fixed. Returns
    the ids retried; a given id that is not failed is left as it is."""
    when = _naive_utc(now)
    wanted = None if ids is None else sorted(set(ids))
    with write_transaction(engine) as conn:
        query = select(outbox.c.id).where(outbox.c.status == "failed").with_for_update()
        if wanted is not None:
            query = query.where(outbox.c.id.in_(wanted))
        found = [row.id for row in conn.execute(query.order_by(outbox.c.id))]
        if found:
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(found), outbox.c.status == "failed")
                .values(status="pending", attempts=0, next_attempt=when)
            )
    if found:
        log.info("outbox: %s failed message(s) put back to pending", len(found))
    return found


@dataclass(frozen=True)
class QueueDepth:
    """Undelivered messages by status, and how many of them are due (their time has come: a
    pending message to send, or a `sending` one whose claim lapsed)."""

    pending: int = 0
    sending: int = 0
    failed: int = 0
    due: int = 0


def queue_depth(conn: Connection, now: datetime | None = None) -> QueueDepth:
    """One statement over the (status, next_attempt) index; sent messages are not read."""
    when = _naive_utc(now)
    due = func.sum(case((outbox.c.next_attempt <= when, 1), else_=0))
    rows = conn.execute(
        select(outbox.c.status, func.count(), due)
        .where(outbox.c.status.in_(("pending", "sending", "failed")))
        .group_by(outbox.c.status)
    )
    counts = {status: (int(count), int(due_count or 0)) for status, count, due_count in rows}
    return QueueDepth(
        pending=counts.get("pending", (0, 0))[0],
        sending=counts.get("sending", (0, 0))[0],
        failed=counts.get("failed", (0, 0))[0],
        due=counts.get("pending", (0, 0))[1] + counts.get("sending", (0, 0))[1],
    )


# ----------------------------------------------------------------------------------- helpers


def _message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        created=row["created"],
        template=row["template"],
        entry=row["entry"],
        dedupe_key=row["dedupe_key"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt=row["next_attempt"],
        last_error=row["last_error"],
        sent=row["sent"],
        recipients=tuple(loads(row["recipients"])),
        context=loads(row["context"]),
    )


def _naive_utc(when: datetime | None) -> datetime:
    """The database's convention: naive UTC (an aware time is converted, a naive one is UTC)."""
    if when is None:
        return utcnow()
    if when.tzinfo is not None:
        return when.astimezone(UTC).replace(tzinfo=None)
    return when
