"""The outbox and its SMTP delivery, against a real SMTP server (aiosmtpd) on SQLite and PostgreSQL.

What a user would notice: a mail for a transition that did not happen, a mail missing or
received twice, a mail that a flaky server made disappear, an address or a secret where an
operator can read it (logs, `fhirsrv outbox list`).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from fhirsrv.cli import main
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.schema import outbox as outbox_table
from fhirsrv.workflow import outbox
from fhirsrv.workflow.mail import ENGLISH_SEPARATOR, Mailer, placeholders, render, template_names
from fhirsrv.workflow.outbox import REDACTED, deliver_due, enqueue, list_messages
from tests.workflow.conftest import SmtpRecorder, smtp_free_port

T0 = datetime(2027, 3, 1, 9, 0, 0)
REFERENT = "camille.referente@structure.example.fr"
ADMIN = "admin.territorial@ars.example.fr"
ENTRY = "Organization/org-42"
TEMPLATES = {
    "application-confirm",
    "referent-credentials",
    "submitted",
    "territory-validated",
    "published",
    "rejected",
    "withdrawn",
    "verification-reminder",
    "verification-reminder-2",
    "delisted",
}


def _queue(
    engine: Engine,
    template: str = "published",
    recipients: list[str] | None = None,
    *,
    entry: str = ENTRY,
    dedupe_key: str | None = None,
    **context: str,
) -> bool:
    """Enqueue one message in its own committed transaction (a transition that went through)."""
    with write_transaction(engine) as conn:
        return enqueue(
            conn,
            template=template,
            recipients=recipients or [REFERENT],
            context={"structure": "Centre de soins de support de Quimper", **context},
            entry=entry,
            dedupe_key=dedupe_key,
            now=T0,
        )


def _statuses(engine: Engine) -> list[str]:
    return [m.status for m in list_messages(engine)]


# ------------------------------------------------------------------------------- templates


def test_every_template_of_the_procedure_exists_and_renders_french_first() -> None:
    assert template_names() >= TEMPLATES
    for name in TEMPLATES:
        context = {key: f"<{key}>" for key in placeholders(name)}
        mail = render(name, context)
        assert "${" not in mail.subject + mail.body, name
        french, separator, english = mail.body.partition(ENGLISH_SEPARATOR)
        assert separator, f"{name}: no English version below the separator"
        assert french.startswith("Bonjour") and "Hello" in english, name
        assert "Cordialement" in french and "Kind regards" in english, name
        assert "structure" in placeholders(name), name


def test_template_placeholders_are_the_documented_ones() -> None:
    assert {"confirm_url"} <= placeholders("application-confirm")
    assert {"client_id", "client_secret", "token_url"} <= placeholders("referent-credentials")
    assert {"reason"} <= placeholders("rejected")
    for name in ("verification-reminder", "verification-reminder-2"):
        assert {"entry_url", "delisting_date"} <= placeholders(name)
    assert (
        "expire" in render("application-confirm", {}).body
        and "7 jours" in render("application-confirm", {}).body
    )


def test_a_line_break_in_a_value_cannot_add_a_header() -> None:
    mail = render("published", {"structure": "Centre\r\nBcc: everyone@example.org"})
    assert "\n" not in mail.subject and "\r" not in mail.subject
    built = Mailer("127.0.0.1").build([REFERENT], mail.subject, mail.body)
    assert built["Bcc"] is None


# --------------------------------------------------------------------------------- enqueue


def test_a_rolled_back_transition_sends_nothing(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        assert enqueue(
            conn, template="published", recipients=[REFERENT], context={"structure": "S"}, entry=ENTRY, now=T0
        )
        raise RuntimeError("the transition failed after queueing its message")
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0) == {"sent": 0, "retried": 0, "failed": 0}
    assert smtp_server.received == [] and list_messages(engine) == []
    # The same transition committing does send: the outbox is written with it, not on its own.
    _queue(engine)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0)["sent"] == 1
    assert len(smtp_server.received) == 1


def test_a_queued_message_is_delivered_once_in_french_with_the_entry_link(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    assert _queue(engine, "submitted", [ADMIN], entry_url="https://annuaire.example.fr/fiche/org-42")
    assert _statuses(engine) == ["pending"]
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0) == {"sent": 1, "retried": 0, "failed": 0}
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0 + timedelta(days=1))["sent"] == 0
    (mail,) = smtp_server.received
    assert mail.envelope_to == [ADMIN]
    assert mail.subject == "Annuaire SOS : Centre de soins de support de Quimper attend votre validation"
    assert mail.message["From"] == "annuaire-sos@sos.example.org"
    assert "https://annuaire.example.fr/fiche/org-42" in mail.body
    assert mail.body.index("Bonjour") < mail.body.index(ENGLISH_SEPARATOR) < mail.body.index("Hello")
    (message,) = list_messages(engine)
    assert (message.status, message.attempts, message.sent, message.last_error) == ("sent", 1, T0, None)


def test_without_an_entry_url_the_link_is_built_from_the_public_base(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    _queue(engine, "delisted", [REFERENT, ADMIN])
    deliver_due(engine, smtp_mailer, smtp_settings, now=T0)
    (mail,) = smtp_server.received
    assert "http://fhir.test/fhir/Organization/org-42" in mail.body
    assert sorted(mail.envelope_to) == sorted([REFERENT, ADMIN])


def test_the_same_dedupe_key_is_queued_once(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    key = "verification-reminder:org-42:2027"
    context = {"delisting_date": "1er avril 2027"}
    assert _queue(engine, "verification-reminder", dedupe_key=key, **context) is True
    # The sweep runs again (another day, another process): nothing new is queued.
    assert _queue(engine, "verification-reminder", dedupe_key=key, **context) is False
    with write_transaction(engine) as conn:
        first = enqueue(
            conn,
            template="published",
            recipients=[REFERENT],
            context={"structure": "S"},
            entry=ENTRY,
            dedupe_key="k2",
        )
        again = enqueue(
            conn,
            template="published",
            recipients=[REFERENT],
            context={"structure": "S"},
            entry=ENTRY,
            dedupe_key="k2",
        )
        assert (first, again) == (True, False)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0)["sent"] == 2
    assert sorted(m.subject for m in smtp_server.received) == sorted(
        [
            "Merci de vérifier la fiche de Centre de soins de support de Quimper dans l'annuaire SOS",
            "La structure S est désormais publiée dans l'annuaire SOS",
        ]
    )


def test_a_key_queued_concurrently_leaves_the_callers_transaction_usable(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check missed a key another transaction committed meanwhile: the insert's unique
    violation must cost the savepoint only, not the transition (PostgreSQL aborts a transaction
    on any error)."""
    _queue(engine, dedupe_key="race")
    monkeypatch.setattr(outbox, "_key_exists", lambda conn, key: False)
    with write_transaction(engine) as conn:
        assert (
            enqueue(
                conn,
                template="published",
                recipients=[REFERENT],
                context={"structure": "S"},
                entry=ENTRY,
                dedupe_key="race",
            )
            is False
        )
        # The transition goes on writing in the same transaction, and commits.
        assert (
            enqueue(
                conn, template="withdrawn", recipients=[REFERENT], context={"structure": "S"}, entry=ENTRY
            )
            is True
        )
    assert [m.template for m in list_messages(engine)] == ["published", "withdrawn"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"template": "no-such-template"}, "no mail template"),
        ({"recipients": []}, "at least one recipient"),
        ({"recipients": ["not an address"]}, "recipient 1 is not an e-mail address"),
        ({"recipients": [REFERENT, "x@y\r\nBcc: z@w"]}, "recipient 2 is not an e-mail address"),
        ({"recipients": REFERENT}, "a list"),
        ({"template": "rejected"}, "needs reason"),
        ({"context": {"structure": 42}}, "must be a string"),
    ],
    ids=repr,
)
def test_a_bad_message_is_refused_at_enqueue_and_stores_nothing(
    engine: Engine, kwargs: dict, error: str
) -> None:
    values = {
        "template": "published",
        "recipients": [REFERENT],
        "context": {"structure": "S"},
        "entry": ENTRY,
        **kwargs,
    }
    with write_transaction(engine) as conn, pytest.raises(ValueError, match=error) as caught:
        enqueue(conn, **values)
    assert "@" not in str(caught.value)
    assert list_messages(engine) == []


# ------------------------------------------------------------------------------ failures


def test_a_refusing_server_gets_the_message_later_with_backoff_and_exactly_once(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    _queue(engine, "rejected", reason="Structure hors du champ des soins de support")
    smtp_server.refuse_next(2)

    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0) == {"sent": 0, "retried": 1, "failed": 0}
    (message,) = list_messages(engine)
    assert (message.status, message.attempts, message.next_attempt) == (
        "pending",
        1,
        T0 + timedelta(seconds=60),
    )
    assert (
        message.last_error is not None and "451" in message.last_error and "try later" in message.last_error
    )
    assert "@" not in message.last_error

    # Not due yet: the server sees nothing.
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0 + timedelta(seconds=59))["retried"] == 0
    assert smtp_server.data_attempts == 1

    t1 = T0 + timedelta(seconds=61)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=t1)["retried"] == 1
    (message,) = list_messages(engine)
    assert (message.attempts, message.next_attempt) == (2, t1 + timedelta(seconds=120))  # doubled

    t2 = t1 + timedelta(seconds=120)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=t2) == {"sent": 1, "retried": 0, "failed": 0}
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=t2 + timedelta(days=2))["sent"] == 0
    assert smtp_server.data_attempts == 3
    (mail,) = smtp_server.received
    assert "Motif : Structure hors du champ des soins de support" in mail.body
    (message,) = list_messages(engine)
    assert (message.status, message.sent, message.last_error) == ("sent", t2, None)


def test_a_server_that_is_down_delays_the_message_without_losing_it(
    engine: Engine, smtp_settings: Settings
) -> None:
    down = smtp_settings.overridden(smtp_port=smtp_free_port())
    _queue(engine)
    assert deliver_due(engine, Mailer.from_settings(down), down, now=T0)["retried"] == 1
    (message,) = list_messages(engine)
    assert message.status == "pending" and message.next_attempt > T0
    assert message.last_error is not None and "Connection" in message.last_error


def test_the_backoff_is_capped_at_six_hours(smtp_settings: Settings) -> None:
    delays = [outbox.retry_delay(smtp_settings, attempts) for attempts in range(1, 12)]
    assert delays[:3] == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]
    assert max(delays) == delays[-1] == timedelta(hours=6)


def test_after_max_attempts_a_message_fails_and_the_cli_retry_delivers_it(
    engine: Engine, db_url: str, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    settings = smtp_settings.overridden(mail_max_attempts=2)
    _queue(engine)
    smtp_server.refuse_next(1000)
    assert deliver_due(engine, smtp_mailer, settings, now=T0)["retried"] == 1
    assert deliver_due(engine, smtp_mailer, settings, now=T0 + timedelta(hours=1))["failed"] == 1
    assert _statuses(engine) == ["failed"]
    # Failed is final until someone retries: later passes leave it alone.
    assert deliver_due(engine, smtp_mailer, settings, now=T0 + timedelta(days=30))["retried"] == 0
    assert smtp_server.data_attempts == 2 and smtp_server.received == []

    runner = CliRunner()
    listed = runner.invoke(main, ["outbox", "list", "--status", "failed", "--database", db_url])
    assert listed.exit_code == 0, listed.output
    (line,) = listed.output.splitlines()
    row = json.loads(line)
    assert (row["template"], row["entry"], row["status"], row["attempts"]) == (
        "published",
        ENTRY,
        "failed",
        2,
    )
    assert "451" in row["last_error"] and "@" not in listed.output

    smtp_server.refuse_next(0)
    retried = runner.invoke(main, ["outbox", "retry", "--database", db_url])
    assert retried.exit_code == 0, retried.output
    assert json.loads(retried.output) == {"retried": [row["id"]]}
    assert _statuses(engine) == ["pending"]

    env = {"FHIRSRV_SMTP_HOST": smtp_server.host, "FHIRSRV_SMTP_PORT": str(smtp_server.port)}
    delivered = runner.invoke(main, ["outbox", "deliver", "--database", db_url], env=env)
    assert delivered.exit_code == 0, delivered.output
    assert json.loads(delivered.output) == {"sent": 1, "retried": 0, "failed": 0}
    assert len(smtp_server.received) == 1 and _statuses(engine) == ["sent"]


def test_retrying_an_id_that_did_not_fail_says_so(engine: Engine, db_url: str) -> None:
    _queue(engine)
    (message,) = list_messages(engine)
    result = CliRunner().invoke(main, ["outbox", "retry", str(message.id), "--database", db_url])
    assert result.exit_code == 1
    assert f"not failed (or unknown): {message.id}" in result.stderr
    assert _statuses(engine) == ["pending"]


def test_a_recipient_refused_for_good_fails_at_once_without_its_address(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    smtp_server.rejected_recipients.add(REFERENT)
    _queue(engine)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0)["failed"] == 1
    (message,) = list_messages(engine)
    assert message.status == "failed" and message.attempts == 1
    assert message.last_error is not None and "550" in message.last_error and "@" not in message.last_error


def test_one_refused_recipient_does_not_resend_to_the_others(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    smtp_server.rejected_recipients.add(ADMIN)
    _queue(engine, "withdrawn", [REFERENT, ADMIN])
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0)["sent"] == 1
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0 + timedelta(days=1))["sent"] == 0
    (mail,) = smtp_server.received
    assert mail.envelope_to == [REFERENT]
    (message,) = list_messages(engine)
    assert message.status == "sent" and message.last_error == "1 recipient(s) refused by the server"


def test_without_an_smtp_host_nothing_is_sent_and_messages_wait(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    off = smtp_settings.overridden(smtp_host="")
    _queue(engine)
    assert deliver_due(engine, Mailer.from_settings(off), off, now=T0 + timedelta(days=1)) == {
        "sent": 0,
        "retried": 0,
        "failed": 0,
    }
    assert smtp_server.data_attempts == 0
    (message,) = list_messages(engine)
    assert (message.status, message.attempts) == ("pending", 0)
    # Once mail is configured, the waiting message goes.
    assert (
        deliver_due(engine, Mailer.from_settings(smtp_settings), smtp_settings, now=T0 + timedelta(days=1))[
            "sent"
        ]
        == 1
    )


# ---------------------------------------------------------------------------- concurrency


def test_parallel_deliveries_send_each_message_once(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    count = 24
    for n in range(count):
        _queue(engine, entry=f"Organization/org-{n}")
    smtp_server.delay = 0.01
    barrier = threading.Barrier(3)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(deliver_due(engine, smtp_mailer, smtp_settings, now=T0))
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sum(r["sent"] for r in results) == count
    ids = [mail.message["Message-ID"] for mail in smtp_server.received]
    assert len(ids) == count and len(set(ids)) == count
    assert _statuses(engine) == ["sent"] * count


def test_a_message_left_sending_by_a_dead_process_is_sent_after_its_lease(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    _queue(engine)
    (claimed,) = outbox.claim_due(engine, T0, 10)  # ... and the process dies before sending
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=T0 + timedelta(minutes=1))["sent"] == 0
    assert smtp_server.received == []
    later = T0 + timedelta(days=1)
    assert deliver_due(engine, smtp_mailer, smtp_settings, now=later)["sent"] == 1
    (mail,) = smtp_server.received
    (message,) = list_messages(engine)
    assert message.status == "sent" and message.attempts == 2
    # The resend keeps its Message-ID, so a duplicate (the documented crash window) can be folded.
    assert mail.message["Message-ID"] == smtp_mailer.message_id(claimed.token)


def test_a_message_that_keeps_killing_its_sender_runs_out_of_attempts(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    settings = smtp_settings.overridden(mail_max_attempts=1)
    _queue(engine)
    outbox.claim_due(engine, T0, 10)  # the process dies mid-send, its only attempt
    assert deliver_due(engine, smtp_mailer, settings, now=T0 + timedelta(days=1))["sent"] == 0
    (message,) = list_messages(engine)
    assert (
        message.status == "failed" and message.last_error is not None and "interrupted" in message.last_error
    )
    assert smtp_server.data_attempts == 0


# ------------------------------------------------------------------------------- privacy


def test_no_address_in_any_log_record(
    engine: Engine,
    smtp_mailer: Mailer,
    smtp_settings: Settings,
    smtp_server: SmtpRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = smtp_settings.overridden(mail_max_attempts=2)
    _queue(engine, "submitted", [ADMIN], entry_url="https://annuaire.example.fr/fiche/org-42")
    _queue(engine, "published", [REFERENT], entry="Organization/org-43")
    _queue(engine, "published", [REFERENT], entry="Organization/org-43", dedupe_key="once")
    _queue(engine, "published", [REFERENT], entry="Organization/org-43", dedupe_key="once")
    # Greylisting servers quote the recipient in their reply: it must not reach a log.
    smtp_server.refuse_next(1, f"451 4.7.1 <{ADMIN}>: Recipient address greylisted, try later")
    deliver_due(engine, smtp_mailer, settings, now=T0)
    smtp_server.rejected_recipients.add(REFERENT)
    deliver_due(engine, smtp_mailer, settings, now=T0 + timedelta(hours=1))
    down = settings.overridden(smtp_port=smtp_free_port())
    _queue(engine, "withdrawn", [ADMIN])
    deliver_due(engine, Mailer.from_settings(down), down, now=T0 + timedelta(hours=2))

    ours = [r for r in caplog.records if r.name.startswith("fhirsrv")]
    texts = [r.getMessage() for r in ours]
    assert (
        any("sent" in t for t in texts)
        and any("not sent" in t for t in texts)
        and any("failed" in t for t in texts)
    )
    for text in texts:
        assert REFERENT not in text and ADMIN not in text and "@" not in text, text
    for message in list_messages(engine):
        assert "@" not in (message.last_error or ""), message


def test_a_client_secret_is_not_kept_once_sent(
    engine: Engine, smtp_mailer: Mailer, smtp_settings: Settings, smtp_server: SmtpRecorder
) -> None:
    _queue(
        engine,
        "referent-credentials",
        client_id="c-123",
        client_secret="s3cr3t-only-once",
        token_url="https://annuaire.example.fr/fhir/token",
    )
    deliver_due(engine, smtp_mailer, smtp_settings, now=T0)
    (mail,) = smtp_server.received
    assert "s3cr3t-only-once" in mail.body and "c-123" in mail.body
    with engine.connect() as conn:
        stored = json.loads(conn.execute(select(outbox_table.c.context)).scalar_one())
    assert stored["client_secret"] == REDACTED and stored["client_id"] == "c-123"
