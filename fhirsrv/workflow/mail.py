"""Outgoing mail: the message templates and one SMTP submission per message.

Templates are files of `templates/`, one per kind of message: a first line `Subject: ...`, a
blank line, then the body, French first and the English version below a separator line. They
are rendered with `string.Template.safe_substitute`, so a value containing `$` is never
re-interpreted and a placeholder the caller forgot shows as itself instead of crashing a
delivery (enqueueing checks the placeholders beforehand, see fhirsrv/workflow/outbox.py).

Nothing here logs, and no error message built here contains an address: the outbox stores
these messages in `last_error` and the CLI prints them.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache
from pathlib import Path
from string import Template

from fhirsrv.settings import SMTP_SECURITIES, Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT_PREFIX = "Subject:"
# The line between a template's French text and its English version.
ENGLISH_SEPARATOR = "---------------------------------------- English version"

# Anything shaped like an address, for scrubbing error texts (a server's reply may quote one).
_ADDRESS = re.compile(r"[^\s<>()\[\]@\"',;:]+@[^\s<>()\[\]@\"',;:]+")


class MailError(Exception):
    """A message was not accepted by the SMTP server; the text never contains an address.

    `permanent` is true when the server refused this very message for good (5xx to every
    recipient, or to its content): trying it again later cannot succeed, whereas a connection
    failure, a 4xx or a refused login (a configuration problem) may pass on a later attempt.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(scrub_addresses(message))
        self.permanent = permanent


def scrub_addresses(text: str) -> str:
    """`text` with every e-mail address replaced by `<address>`: logs and the outbox keep none."""
    return _ADDRESS.sub("<address>", text)


# ----------------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    body: str


@cache
def template_names() -> frozenset[str]:
    """Every template that exists, so enqueueing an unknown one fails in the transition's tests.

    Read once per process, like the rest of the code: a changed template needs a restart."""
    return frozenset(p.name for p in TEMPLATES_DIR.iterdir() if p.is_file() and not p.name.startswith("."))


@cache
def _template_text(name: str) -> str:
    if name not in template_names():
        raise ValueError(f"no mail template {name!r}")
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def placeholders(name: str) -> frozenset[str]:
    """The `${...}` names a template uses: what its context must provide."""
    text = _template_text(name)
    return frozenset(
        m.group("named") or m.group("braced")
        for m in Template.pattern.finditer(text)
        if m.group("named") or m.group("braced")
    )


def render(name: str, context: dict[str, str]) -> RenderedMail:
    """The subject and body of template `name` filled with `context`.

    The subject is folded onto one line: a value with a line break (a structure's name typed
    with one) must not end the header and start another one.
    """
    text = Template(_template_text(name)).safe_substitute(context)
    first, _, rest = text.partition("\n")
    if not first.startswith(SUBJECT_PREFIX):
        raise ValueError(f"mail template {name!r} does not start with {SUBJECT_PREFIX!r}")
    subject = " ".join(first[len(SUBJECT_PREFIX) :].split())
    return RenderedMail(subject=subject, body=rest.lstrip("\n"))


# --------------------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Mailer:
    """Submits messages to one SMTP server; an empty host means mail is off."""

    host: str
    port: int = 25
    security: str = "none"
    user: str = ""
    password: str = field(default="", repr=False)
    sender: str = "annuaire-sos@localhost"
    timeout: float = 10

    def __post_init__(self) -> None:
        if self.security not in SMTP_SECURITIES:
            raise ValueError(
                f"SMTP security must be one of {', '.join(SMTP_SECURITIES)}, not {self.security!r}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.mail_sender,
            timeout=settings.smtp_timeout,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def message_id(self, token: str) -> str:
        """A Message-ID fixed by `token`: a message sent twice (see outbox.py) has the same one,
        which lets mail clients and MTAs that deduplicate on it show it once."""
        domain = self.sender.rpartition("@")[2] or "localhost"
        return f"<{token}@{domain}>"

    def build(self, to: list[str], subject: str, body: str, *, message_id: str | None = None) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        if message_id is not None:
            message["Message-ID"] = message_id
        message.set_content(body, charset="utf-8")
        return message

    def send(self, to: list[str], subject: str, body: str, *, message_id: str | None = None) -> int:
        """Submit one message; the number of recipients the server refused (0 when all took it).

        Raises MailError when the message was not accepted at all. Recipients refused while
        others were accepted are only counted: the message went, and sending it again would
        duplicate it for the others.
        """
        if not self.enabled:
            raise MailError("mail is off (no SMTP host configured)")
        if not to:
            raise MailError("no recipient", permanent=True)
        message = self.build(to, subject, body, message_id=message_id)
        try:
            with self._connect() as smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password)
                refused = smtp.send_message(message, from_addr=self.sender, to_addrs=to)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            permanent = all(code >= 500 for code in codes)
            raise MailError(
                f"every recipient refused (SMTP {', '.join(map(str, codes))})", permanent=permanent
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            # A 5xx to the content is about this message; a 5xx to the sender or the login is the
            # server's configuration, which an administrator may fix: those are retried.
            permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
            raise MailError(f"SMTP {exc.smtp_code} {' '.join(text.split())}", permanent=permanent) from None
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            # OSError: refused or timed-out connection, TLS failure; ValueError: e.g. a header
            # smtplib cannot encode. The class name says what happened without any address.
            detail = " ".join(str(exc).split())
            raise MailError(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__) from None
        return len(refused)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)
