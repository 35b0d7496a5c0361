"""Rate limiting (token buckets per client and per anonymous IP), security headers and CORS."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, request

from fhirsrv.api.caller import principal as current_principal
from fhirsrv.api.caller import set_meter
from fhirsrv.errors import TooManyRequests
from fhirsrv.settings import VARIABLES, Settings

EXPOSED = "ETag, Location, Content-Location, Last-Modified, Retry-After, WWW-Authenticate"


class RateLimiter:
    """In-memory token buckets: `per_minute` requests, bursts up to the same number.

    Per process: behind several workers the effective limit multiplies by their number, which
    is acceptable for abuse protection (the aim), not for billing.
    """

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


@dataclass(frozen=True)
class _BucketMeter:
    """One caller's bucket, for the requests a request is worth beyond itself (a Bundle's entries)."""

    limiter: RateLimiter
    key: str
    per_minute: int
    variable: str

    def charge(self, requests: int) -> None:
        if self.per_minute > 0 and requests + 1 > self.per_minute:
            raise TooManyRequests(
                f"This request counts as {requests + 1} requests (one per Bundle entry); this caller "
                f"may make at most {self.per_minute} per minute ({self.variable}): split it"
            )
        _refuse_after(self.limiter.take(self.key, self.per_minute, cost=requests))


def _refuse_after(wait: float) -> None:
    if wait > 0:
        raise TooManyRequests(
            f"Too many requests; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def install_rate_limit(app: Flask, settings: Settings) -> RateLimiter:
    """Limits per client (token bearer) and per anonymous IP address, per minute; 0 disables one."""
    limiter = RateLimiter()

    def _limit() -> None:
        principal = current_principal()
        if principal.client_id:
            key, rate, name = "client:" + principal.client_id, settings.rate_limit_client, "rate_limit_client"
        else:
            key, rate = "ip:" + (request.remote_addr or "?"), settings.rate_limit_anonymous
            name = "rate_limit_anonymous"
        _refuse_after(limiter.take(key, rate))
        set_meter(_BucketMeter(limiter, key, rate, VARIABLES[name]))

    app.before_request(_limit)
    return limiter


def install_headers(app: Flask, settings: Settings) -> None:
    """Security headers on every response, HSTS over https, CORS for the allowed origins."""
    origins = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}

    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if not response.mimetype.startswith("text/html"):
            headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        if settings.hsts and secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        origin = request.headers.get("Origin")
        if origin and request.path.startswith("/fhir") and ("*" in origins or origin in origins):
            headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            if "*" not in origins:
                headers.add("Vary", "Origin")
            headers["Access-Control-Expose-Headers"] = EXPOSED
            if request.method == "OPTIONS":
                headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
                headers["Access-Control-Allow-Headers"] = (
                    "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, "
                    "If-Modified-Since, Prefer"
                )
                headers["Access-Control-Max-Age"] = "600"
        return response

    app.after_request(_headers)
