"""One notification POST to a receiver, at an address the endpoint rules accepted.

http.client rather than a higher-level client, because of three things it lets us hold: the
connection goes to the address `endpoints.check` vetted (the name is never resolved again, so
a DNS answer cannot change under the check), the Host header and the TLS certificate check
still use the name the client wrote, and redirects are never followed (a 3xx is a failure).
Every socket operation is bounded by the timeout (FHIRSRV_SUBSCRIPTION_TIMEOUT), and at most
MAX_ANSWER_BYTES of the answer are read: a slow or chatty receiver costs one delivery thread
that long, never a write nor the other subscriptions.

A failure is told in fixed words (status, timeout, refusal, TLS): never the receiver's answer
body nor any header value, which may hold a secret.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from fhirsrv import __version__
from fhirsrv.sync.endpoints import Target

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = f"fhirsrv/{__version__} (subscription notification)"


@dataclass(frozen=True)
class Sent:
    """What one POST came to: `error` None when the receiver accepted it (2xx)."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


_TLS = ssl.create_default_context()


def post(target: Target, body: bytes, headers: Sequence[tuple[str, str]], timeout: float) -> Sent:
    """POST `body` (FHIR JSON) with the Subscription's `headers`; tries each vetted address in
    turn while the connection itself fails."""
    last = Sent(None, "the endpoint has no address to connect to")
    for address in target.addresses:
        conn: http.client.HTTPConnection = (
            _PinnedHTTPS(target, address, timeout, _TLS)
            if target.scheme == "https"
            else _PinnedHTTP(target, address, timeout)
        )
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            last = Sent(None, _connect_error(exc, timeout))
            continue
        return _exchange(conn, target, body, headers, timeout)
    return last


def _connect_error(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"could not connect within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "could not connect: connection refused"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake with the receiver failed (certificate or protocol)"
    return f"could not connect ({type(exc).__name__})"


def _exchange(
    conn: http.client.HTTPConnection,
    target: Target,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    timeout: float,
) -> Sent:
    try:
        conn.putrequest("POST", target.path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/fhir+json")
        conn.putheader("Accept", "application/fhir+json")
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Content-Length", str(len(body)))
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        response.read(MAX_ANSWER_BYTES)
        status = response.status
    except TimeoutError:
        return Sent(None, f"the receiver did not answer within {timeout:g} s")
    except ssl.SSLError:
        return Sent(None, "the TLS handshake with the receiver failed (certificate or protocol)")
    except (http.client.HTTPException, ConnectionError) as exc:
        return Sent(None, f"the receiver broke the exchange ({type(exc).__name__})")
    except OSError as exc:
        return Sent(None, f"the exchange with the receiver failed ({type(exc).__name__})")
    except ValueError:  # http.client's own check of a header (written before the rules held)
        return Sent(None, "a header of channel.header cannot be sent (not a valid HTTP header)")
    finally:
        conn.close()
    if 200 <= status < 300:
        return Sent(status, None)
    if 300 <= status < 400:
        return Sent(status, f"the receiver answered {status}, a redirect, which is not followed")
    return Sent(status, f"the receiver answered {status}")
