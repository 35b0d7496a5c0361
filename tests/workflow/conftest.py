"""A real SMTP server for the workflow's tests (aiosmtpd on 127.0.0.1, a free port).

Fixtures are prefixed `smtp_` so they cannot clash with other fixtures of tests/workflow. The
server records what it accepted and can be told to refuse: a number of DATA commands with
`451 4.3.0 try later` (a greylisting or overloaded server), or given recipients with a 5xx that
quotes the address (as real servers do), to check no address leaks into errors or logs.
"""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from fhirsrv.settings import Settings
from fhirsrv.workflow.mail import Mailer


@dataclass
class SmtpReceived:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        """As a mail client shows it: unfolded (Python folds a long header right after the colon)."""
        return " ".join(str(self.message["Subject"]).split())

    @property
    def body(self) -> str:
        return self.message.get_content()


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: what the server accepted, and how it should misbehave."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[SmtpReceived] = field(default_factory=list)
    # DATA commands seen, accepted or not: how many delivery attempts reached the server.
    data_attempts: int = 0
    refusals_left: int = 0
    refusal: str = "451 4.3.0 try later"
    rejected_recipients: set[str] = field(default_factory=set)
    # Seconds to wait before accepting a message (widens the window of parallel deliveries).
    delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_next(self, count: int, reply: str = "451 4.3.0 try later") -> None:
        """Answer the next `count` DATA commands with `reply` instead of accepting the message."""
        with self._lock:
            self.refusals_left = count
            self.refusal = reply

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rejected_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.data_attempts += 1
            if self.refusals_left > 0:
                self.refusals_left -= 1
                return self.refusal
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(SmtpReceived(list(envelope.rcpt_tos), message))
        return "250 2.0.0 OK: queued"


def smtp_free_port() -> int:
    """A port nothing listens on (just freed by the OS); also what a server that is down looks like."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpRecorder]:
    recorder = SmtpRecorder(port=smtp_free_port())
    controller = Controller(recorder, hostname=recorder.host, port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpRecorder) -> Settings:
    """The test app's settings, sending to `smtp_server`."""
    return settings.overridden(
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout=5,
        mail_sender="annuaire-sos@sos.example.org",
        mail_retry_base_seconds=60,
        mail_max_attempts=8,
    )


@pytest.fixture
def smtp_mailer(smtp_settings: Settings) -> Mailer:
    return Mailer.from_settings(smtp_settings)
