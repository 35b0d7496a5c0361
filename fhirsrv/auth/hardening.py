"""Rate limiting (token buckets per client and per address), security headers, caching and CORS."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response

from fhirsrv.api.caller import is_unguarded, set_meter
from fhirsrv.api.caller import principal as current_principal
from fhirsrv.api.current import current_request
from fhirsrv.errors import TooManyRequests
from fhirsrv.interactions.context import UNMETERED
from fhirsrv.settings import VARIABLES, Settings

EXPOSED = "ETag, Location, Content-Location, Last-Modified, Retry-After, WWW-Authenticate"


class RateLimiter:
    """In-memory token buckets: `per_minute` requests, bursts up to the same number.

    Per process. Under several worker processes (`fhirsrv serve --workers N`) each one is given
    its share of a limit (`share`), so a caller spread over all of them still gets at most the
    setting, without a database write on every request (which would queue every reader behind
    SQLite's single writer)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def take(self, key: str, per_minute: int, now: float | None = None, cost: int = 1) -> float:
        """0 when `cost` requests are allowed (and counted), else the seconds to wait before
        they would be; nothing is counted then."""
        if per_minute <= 0 or cost <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return (cost - tokens) / rate
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._buckets.clear()  # crude bound on memory under an address-spraying flood
            self._buckets[key] = (tokens - cost, now)
            return 0.0


def share(per_minute: int, workers: int) -> int:
    """One worker process's part of a per-minute limit: the limit divided by the number of
    processes, rounded up (so a limit never becomes 0, "no limit"); 0 stays 0.

    The kernel hands each new connection to whichever process accepts it first, so a caller
    whose requests are spread over all N processes gets at most N x share (the setting, or a
    few more when it does not divide), and one that keeps a single connection open, all on one
    process, gets its share: the setting divided by N."""
    return math.ceil(per_minute / workers) if per_minute > 0 else 0


@dataclass(frozen=True)
class _BucketMeter:
    """One caller's bucket, for the requests a request is worth beyond itself (a Bundle's entries)."""

    limiter: RateLimiter
    key: str
    per_minute: int
    variable: str
    # Processes of the server the setting is shared between (its per_minute is this one's share).
    workers: int = 1

    def charge(self, requests: int) -> None:
        if self.per_minute > 0 and requests + 1 > self.per_minute:
            where = f" in each of the {self.workers} server processes" if self.workers > 1 else ""
            raise TooManyRequests(
                f"This request counts as {requests + 1} requests (one per Bundle entry); this caller "
                f"may make at most {self.per_minute} per minute{where} ({self.variable}): split it"
            )
        _refuse_after(self.limiter.take(self.key, self.per_minute, cost=requests))


def _refuse_after(wait: float) -> None:
    if wait > 0:
        raise TooManyRequests(
            f"Too many requests; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


class RequestLimits:
    """The rate limits of one app: per client for a valid token's bearer, per address for
    everyone else, anonymous callers and requests with a bad token alike (a bad token must
    not buy an unlimited budget for guessing). The address is the client's as the trusted
    proxy hop gives it (FHIRSRV_TRUSTED_PROXIES), else the connection's. Each limit is this
    process's share of the setting (`share`, FHIRSRV_WORKERS processes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buckets = RateLimiter()
        self.workers = settings.workers
        self.per_client = share(settings.rate_limit_client, settings.workers)
        self.per_address = share(settings.rate_limit_anonymous, settings.workers)

    def charge_client(self, client_id: str) -> _BucketMeter:
        return self._charge("client:" + client_id, self.per_client, "rate_limit_client")

    def charge_address(self, address: str | None) -> _BucketMeter:
        return self._charge("ip:" + (address or "?"), self.per_address, "rate_limit_anonymous")

    def _charge(self, key: str, per_minute: int, name: str) -> _BucketMeter:
        """Counts this request; returns the caller's bucket, for what the request is worth
        beyond itself (a Bundle's entries)."""
        _refuse_after(self.buckets.take(key, per_minute))
        return _BucketMeter(self.buckets, key, per_minute, VARIABLES[name], self.workers)


def install_rate_limit(app: Flask, limits: RequestLimits) -> None:
    """Charges every request the protector let through (those it refused, it charged itself)."""

    def _limit() -> None:
        if is_unguarded():  # health probes and /metrics: see api/caller.py
            set_meter(UNMETERED)
            return
        principal = current_principal()
        if principal.client_id:
            meter = limits.charge_client(principal.client_id)
        else:
            meter = limits.charge_address(current_request().remote_addr)
        set_meter(meter)

    app.before_request(_limit)


# Requests whose answers must never be kept by a cache: the token endpoint's.
TOKEN_PATHS = ("/fhir/token", "/oauth/token")
ALLOWED_HEADERS = "Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, Prefer"


# On every response (the view's own, when it sets one, wins).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
# Besides, on every response but a page: nothing in it may load or frame anything.
SECURITY_HEADERS_NOT_HTML = (
    *SECURITY_HEADERS,
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def install_headers(app: Flask, settings: Settings) -> None:
    """Security headers on every response, HSTS over https, no-store for authenticated
    answers, CORS: anonymous reads open to the allowed origins (`*` by default), requests
    with a token only to the origins FHIRSRV_CORS_ORIGINS names."""
    origins = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}
    public_https = settings.base_url.lower().startswith("https://")

    def _headers(response: Response) -> Response:
        req = current_request()  # once, not per use
        headers = response.headers
        # Each security header unless the view set its own: one look at the headers for all
        # (a setdefault each went through the list three times).
        present = {name.lower() for name, _ in headers}
        wanted = SECURITY_HEADERS if response.mimetype.startswith("text/html") else SECURITY_HEADERS_NOT_HTML
        # request.is_secure is the connection's scheme, or the trusted proxy's (ProxyFix): a
        # forwarded header from anyone else was never believed.
        if settings.hsts and (public_https or req.is_secure):
            wanted = (*wanted, HSTS)
        for name, value in wanted:
            if name.lower() not in present:
                headers.add(name, value)
        credentialed = "HTTP_AUTHORIZATION" in req.environ  # where request.headers looks
        if credentialed or req.path in TOKEN_PATHS:
            headers["Cache-Control"] = "no-store"
        origin = req.environ.get("HTTP_ORIGIN")
        if origin and req.path.startswith("/fhir"):
            listed, open_to_all = origin in origins, "*" in origins
            _cors(headers, origin, listed=listed, open_to_all=open_to_all, credentialed=credentialed)
        return response

    app.after_request(_headers)


def _cors(headers: Any, origin: str, *, listed: bool, open_to_all: bool, credentialed: bool) -> None:
    """A listed origin may send tokens; `*` opens anonymous requests only, so a page of any
    site can read the public directory but never act with a token it got hold of."""
    headers.add("Vary", "Origin")
    if listed:
        headers["Access-Control-Allow-Origin"] = origin
    elif open_to_all and not credentialed:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        return
    headers["Access-Control-Expose-Headers"] = EXPOSED
    if current_request().method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        headers["Access-Control-Allow-Headers"] = ("Authorization, " if listed else "") + ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = "600"
