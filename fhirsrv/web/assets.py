"""The site's static files (style sheets, scripts, Leaflet), addressed by their content.

Each page links its files as `/assets/<file>?v=<digest of the file>`. An address that names the
file's current digest can be kept by the browser for a year: a new release changes the digest,
so the address, and no visitor keeps an old script. Without it every page view revalidated
each file, and a page cost its visitor about six requests of the anonymous rate limit instead
of one. An address without the digest (or with a stale one) is answered as before, revalidated.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, request, url_for

STATIC = Path(__file__).resolve().parent / "static"
KEPT_SECONDS = 365 * 24 * 3600


@lru_cache(maxsize=64)
def digest(filename: str) -> str:
    """The first 16 hex digits of the file's SHA-256 (read once per process)."""
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:16]


def asset_url(filename: str) -> str:
    """The address a page links `filename` by (a Jinja global: `asset_url('site.css')`)."""
    return url_for("web.static", filename=filename, v=digest(filename))


class SiteBlueprint(Blueprint):
    """The site's blueprint: its static files are long-lived when asked for by digest."""

    def get_send_file_max_age(self, filename: str | None) -> int | None:
        if filename and request.args.get("v") == _digest_or_none(filename):
            return KEPT_SECONDS
        return super().get_send_file_max_age(filename)


def _digest_or_none(filename: str) -> str | None:
    try:
        return digest(filename)
    except OSError:
        return None
