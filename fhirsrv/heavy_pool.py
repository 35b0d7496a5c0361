"""The heavy-request pool of `fhirsrv serve --workers N`: costly requests answered by processes
of their own, so that they never hold the interpreter of a process that answers cheap ones.

Why: one Python process runs one thread at a time. A client sending batches, `$expand`s or
searches with many sort keys or includes back to back kept its worker's interpreter busy, and
every cheap request that worker took (`/metadata`, a read) waited its turn: 1.4 to 4 times its
idle time with two workers (README, "Limits against abuse"). More threads or a shorter switch
interval only share the wait out. So the main workers hand each request that `is_heavy` names,
unchanged, to the pool over a Unix socket in a private directory, and wait for its answer
without holding the interpreter (a blocking read); they keep answering the others themselves.

What `is_heavy` names is decided from the request line (and If-None-Exist) alone, before
anything is parsed: a batch or transaction (POST to the base), an operation (`$expand`,
`$validate`, the `$export` kick-off...; not the export's status and files), a search sent as a
form (`_search`), and a search or conditional write with a sort, an include, a reverse chain
(`_has`), a filter, a text search, a chain, a value-set or hierarchy modifier, an exact count
or a page over HEAVY_PAGE_SIZE entries. Reads, plain searches, history, writes of one
resource, `/metadata`, the web pages and the probes stay in the main workers.

The pool runs the same app with the same settings: the same access policy, authentication and
rate limits (each of its processes with its share, as a main worker), the same log line, with
`"pool": "heavy"` in it. The main worker sends the client's address in PEER_HEADER, which the
pool takes as the connection's (`trust_forwarded_peer`): the socket is reachable only through
its directory, readable by the server's user alone, and a client's own PEER_HEADER is never
passed on.

When the pool cannot be reached (not started yet, or its processes gone), or closes the
connection before it has the whole request, the main worker answers the request itself, as
without a pool: slower for the others, not refused. When the pool answers from a request's
head alone (401, 415, 429) its answer is passed on. When it fails after it had the whole
request, the request may have been carried out: the answer is a 502 OperationOutcome saying
so, never a second attempt. How many of a worker's threads may wait on the pool at once is
serving.py's (`HeavyPool`): past that, a 503 (BUSY).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, unquote

log = logging.getLogger("fhirsrv")

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
# An answer up to this long is read whole and handed to granian at once; a longer one is passed
# on CHUNK_BYTES at a time (each chunk takes the worker's interpreter once).
WHOLE_BYTES = 256 * 1024
CHUNK_BYTES = 1024 * 1024
# What a query keeps as it is: every printable ASCII character (spaces and others escaped).
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# Search parameters (names, or their start before a `:` modifier) that make a search heavy.
HEAVY_PARAMETERS = frozenset({"_sort", "_include", "_revinclude", "_has", "_filter", "_text", "_content"})
# Modifiers that expand a value set or walk a hierarchy inside a search.
HEAVY_MODIFIERS = frozenset({"in", "not-in", "below", "above"})
# Parameters whose value asks for an exact count of every match.
HEAVY_VALUES = frozenset({("_total", "accurate"), ("_summary", "count")})
# Operations answered by the main workers: the export's status and its files.
NOT_HEAVY_OPERATIONS = ("/$export-status/", "/$export-file/")
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
    if environ.get("REQUEST_METHOD") == "POST" and path in ("/fhir", "/fhir/"):
        return True
    if "/$" in path:
        # The export's status and files are read where the main workers are (a file is sent as
        # it is on disk); its kick-off, and every other operation, is heavy.
        return not path.startswith(NOT_HEAVY_OPERATIONS, path.index("/$"))
    if path.endswith("/_search"):
        return True
    # A search's query, or a conditional write's (PUT, PATCH, DELETE ?criteria, If-None-Exist).
    return _heavy_query(environ.get("QUERY_STRING", "")) or _heavy_query(
        environ.get("HTTP_IF_NONE_EXIST", "")
    )


def _heavy_query(query: str) -> bool:
    if not query:
        return False
    for part in query.split("&"):
        raw_name, _, raw_value = part.partition("=")
        name = unquote(raw_name)
        if "." in name:
            return True  # a chain: organization.name, organization:Organization.name
        base, _, modifier = name.partition(":")  # the engine reads `_count:x` as `_count`
        if base in HEAVY_PARAMETERS or modifier in HEAVY_MODIFIERS:
            return True
        value = unquote(raw_value)
        if (base, value) in HEAVY_VALUES:
            return True
        if base == "_count" and value.isdigit() and int(value) > HEAVY_PAGE_SIZE:
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
    `start_response` and returned; Unreachable when the pool did not take the whole request
    (so did not run it)."""
    conn = _UnixConnection(socket_path)
    try:
        conn.connect()
        # Nothing is sent before endheaders: a request line or header http.client refuses
        # (a value it cannot encode) leaves the request to the main worker, as unsent.
        conn.putrequest(
            environ.get("REQUEST_METHOD", "GET"), _target(environ), skip_host=True, skip_accept_encoding=True
        )
        for name, value in _headers(environ, len(body)):
            conn.putheader(name, value)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        conn.close()
        raise Unreachable(type(exc).__name__) from None
    sent = True
    try:
        conn.endheaders(body or None)
    except OSError:
        # The pool closed the connection before reading the whole body: it answered from the
        # head alone (a 401, 413, 415 or 429), or it died. Its answer, if it gave one.
        sent = False
    try:
        response = conn.getresponse()
    except (OSError, http.client.HTTPException):
        conn.close()
        if not sent:  # it never had the whole request, so never ran it
            raise Unreachable("the pool closed the connection while the request was sent") from None
        return canned(start_response, "502 Bad Gateway", LOST, environ)
    headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _NOT_PASSED_ON]
    start_response(f"{response.status} {response.reason}", headers)
    if response.length is not None and response.length <= WHOLE_BYTES:
        try:
            data = response.read()
        except (OSError, http.client.HTTPException):
            log.warning("the heavy-request pool stopped while it sent an answer: the answer was cut short")
            data = b""  # the client sees a body shorter than its Content-Length
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
    except (OSError, http.client.HTTPException):
        log.warning("the heavy-request pool stopped while it sent an answer: the answer was cut short")
    finally:
        conn.close()


def _target(environ: dict[str, Any]) -> str:
    """The request's path and query as the client sent them (WSGI decodes the path as latin-1)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    target = quote(path.encode("latin-1"), safe="/$:@!*'(),;=+&-._~")
    # A query's raw bytes beyond ASCII (hyper lets them through) escaped: the app decodes both alike.
    query = quote(environ.get("QUERY_STRING", "").encode("latin-1"), safe=_QUERY_SAFE)
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


def _outcome(code: str, diagnostics: str) -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


LOST = _outcome(
    "transient",
    "The server process answering this request stopped before it answered. The request may have been "
    "carried out: read the resources it would change before sending it again.",
)
BUSY = _outcome(
    "transient",
    "The server is answering as many costly requests (batches, operations, searches with sorts, includes "
    "or chains) as it may at once: send this one again in a moment.",
)


def canned(
    start_response: StartResponse, status: str, body: bytes, environ: dict[str, Any], *extra: tuple[str, str]
) -> list[bytes]:
    """An OperationOutcome the main worker answers itself, with the headers the app puts on every
    answer that matter here: the request id, no caching, the security headers."""
    from fhirsrv.api.request_log import HEADER, request_id_of
    from fhirsrv.auth.hardening import SECURITY_HEADERS_NOT_HTML

    headers = [
        ("Content-Type", "application/fhir+json; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        (HEADER, request_id_of(environ.get("HTTP_X_REQUEST_ID"))),
        *SECURITY_HEADERS_NOT_HTML,
        *extra,
    ]
    start_response(status, headers)
    return [body]
