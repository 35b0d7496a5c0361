"""The heavy-request pool of `fhirsrv serve --workers N`: costly requests answered by processes
of their own, so that they never hold the interpreter of a process that answers cheap ones.

Why: one Python process runs one thread at a time. A client sending batches, `$expand`s or
searches with many sort keys or includes back to back kept its worker's interpreter busy, and
every cheap request that worker took (`/metadata`, a read) waited its turn: 1.4 to 4 times its
idle time with two workers (README, "Limits against abuse"). More threads or a shorter switch
interval only share the wait out. So the main workers hand each request that `is_heavy` names,
unchanged, to the pool over a Unix socket in a private directory, and wait for its answer
without holding the interpreter (a blocking read); they keep answering the others themselves.

What `is_heavy` names is decided from the request line alone, before anything is parsed:
a batch or transaction (POST to the base), an operation (`$expand`, `$validate`, `$export`...),
a search sent as a form (`_search`), and a search with a sort, an include, a reverse chain
(`_has`), a filter, a text search, a chain, an accurate total or a page over
HEAVY_PAGE_SIZE entries. Reads, plain searches, history, writes of one resource, `/metadata`,
the web pages and the probes stay in the main workers.

The pool runs the same app with the same settings: the same access policy, authentication and
rate limits (each of its processes with its share, as a main worker), the same log line, with
`"pool": "heavy"` in it. The main worker sends the client's address in PEER_HEADER, which the
pool takes as the connection's (`trust_forwarded_peer`): the socket is reachable only through
its directory, readable by the server's user alone, and a client's own PEER_HEADER is never
passed on.

When the pool cannot be reached (not started yet, or its processes gone), the main worker
answers the request itself, as without a pool: slower for the others, not refused. When the
pool fails after the request was sent, the request may have been carried out: the answer is a
502 OperationOutcome saying so, never a second attempt.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, unquote

# The request's environ key the pool's processes set, for the request log's "pool" field.
POOL_KEY = "fhirsrv.pool"
# The header carrying the client's address from a main worker to the pool.
PEER_HEADER = "X-Fhirsrv-Peer"
_PEER_ENVIRON = "HTTP_X_FHIRSRV_PEER"
# A search asking for more entries a page than this is heavy (the default page is 20).
HEAVY_PAGE_SIZE = 100
# Seconds a main worker waits on the pool for each step of an answer (connect, each read).
# A request of the pool is bounded by the database's statement timeout and the request's budgets;
# this only keeps a main worker's thread from waiting forever on a pool that hangs.
ANSWER_TIMEOUT = 300.0
# Bytes a main worker reads from the pool at a time while passing an answer on.
CHUNK_BYTES = 64 * 1024
# Search parameters (names, or their start before a `:` modifier) that make a search heavy.
HEAVY_PARAMETERS = frozenset({"_sort", "_include", "_revinclude", "_has", "_filter", "_text", "_content"})
# Headers of the pool's answer a main worker does not pass on: the connection's own, and the
# Server header (the main worker adds its own).
_NOT_PASSED_ON = frozenset({"connection", "keep-alive", "transfer-encoding", "server"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def is_heavy(environ: dict[str, Any]) -> bool:
    """Whether the request goes to the heavy pool (see the module docstring)."""
    path: str = environ.get("PATH_INFO", "")
    if not path.startswith("/fhir"):
        return False
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "POST" and path in ("/fhir", "/fhir/"):
        return True
    if "/$" in path or path.endswith("/_search"):
        return True
    if method != "GET":
        return False
    return _heavy_query(environ.get("QUERY_STRING", ""))


def _heavy_query(query: str) -> bool:
    if not query:
        return False
    for part in query.split("&"):
        raw_name, _, raw_value = part.partition("=")
        name = unquote(raw_name)
        if "." in name:
            return True  # a chain: organization.name, organization:Organization.name
        if name.partition(":")[0] in HEAVY_PARAMETERS:
            return True
        if name == "_total" and unquote(raw_value) == "accurate":
            return True
        if name == "_count":
            value = unquote(raw_value)
            if value.isdigit() and int(value) > HEAVY_PAGE_SIZE:
                return True
    return False


def trust_forwarded_peer(environ: dict[str, Any]) -> None:
    """In a pool process: the client's address as the main worker saw it, in REMOTE_ADDR (where
    the app's ProxyFix and rate limits look), and the request marked as the pool's."""
    peer = environ.pop(_PEER_ENVIRON, None)
    if peer:
        environ["REMOTE_ADDR"] = peer
    environ[POOL_KEY] = "heavy"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=ANSWER_TIMEOUT)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def answers(socket_path: str, timeout: float) -> bool:
    """Whether a worker of the pool answers its health probe within `timeout` seconds."""
    conn = _UnixConnection(socket_path)
    conn.timeout = timeout
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Unreachable(Exception):
    """The pool took no request (nothing was sent): the main worker answers it itself."""


def forward(
    socket_path: str, environ: dict[str, Any], body: bytes, start_response: StartResponse
) -> Iterable[bytes]:
    """The pool's answer to the request of `environ` (its body already read, `body`), passed to
    `start_response` and returned; Unreachable when no pool took it."""
    conn = _UnixConnection(socket_path)
    try:
        conn.connect()
    except OSError as exc:  # nothing was sent, whatever the reason
        raise Unreachable(type(exc).__name__) from None
    try:
        conn.putrequest(
            environ.get("REQUEST_METHOD", "GET"), _target(environ), skip_host=True, skip_accept_encoding=True
        )
        for name, value in _headers(environ, len(body)):
            conn.putheader(name, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
    except OSError:
        conn.close()
        return _lost(start_response)
    headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _NOT_PASSED_ON]
    start_response(f"{response.status} {response.reason}", headers)
    if response.length is not None and response.length <= CHUNK_BYTES:
        try:
            data = response.read()
        except OSError:
            data = b""  # cut short: the client sees a body shorter than its Content-Length
        conn.close()
        return [data]
    return _passed_on(conn, response)


def _passed_on(conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> Iterator[bytes]:
    try:
        while True:
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                return
            yield chunk
    except OSError:
        return  # cut short, as the pool left it
    finally:
        conn.close()


def _target(environ: dict[str, Any]) -> str:
    """The request's path and query as the client sent them (WSGI decodes the path as latin-1)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    target = quote(path.encode("latin-1"), safe="/$:@!*'(),;=+&-._~")
    query = environ.get("QUERY_STRING", "")
    return f"{target}?{query}" if query else target


def _headers(environ: dict[str, Any], length: int) -> Iterator[tuple[str, str]]:
    """The request's headers from `environ`, the client's address in PEER_HEADER (a client's own
    PEER_HEADER dropped), and the body's length as read."""
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in (
            _PEER_ENVIRON,
            "HTTP_CONTENT_LENGTH",
            "HTTP_TRANSFER_ENCODING",
            "HTTP_CONNECTION",
        ):
            yield key[5:].replace("_", "-").title(), value
    if environ.get("CONTENT_TYPE"):
        yield "Content-Type", environ["CONTENT_TYPE"]
    yield "Content-Length", str(length)
    yield PEER_HEADER, environ.get("REMOTE_ADDR") or ""


_LOST = json.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "transient",
                "diagnostics": (
                    "The server process answering this request stopped before it answered. The request "
                    "may have been carried out: read the resources it would change before sending it again."
                ),
            }
        ],
    }
).encode()


def _lost(start_response: StartResponse) -> list[bytes]:
    start_response(
        "502 Bad Gateway",
        [
            ("Content-Type", "application/fhir+json; charset=utf-8"),
            ("Content-Length", str(len(_LOST))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [_LOST]
