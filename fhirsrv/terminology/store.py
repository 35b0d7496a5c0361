"""Finding terminology resources by canonical URL (and version) through the uri index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from fhirsrv.errors import NotFound
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import idx_uri, live, resource


def by_url(conn: Connection, res_type: str, url: str, version: str | None = None) -> dict[str, Any] | None:
    """The resource with this canonical (`url|version` accepted); the latest version if several."""
    if version is None and "|" in url:
        url, version = url.split("|", 1)
    rids = [
        r
        for (r,) in conn.execute(
            select(idx_uri.c.rid).where(
                idx_uri.c.res_type == res_type, idx_uri.c.param == "url", idx_uri.c.value == url
            )
        )
    ]
    candidates = [loads(s.content) for s in repository.get_many(conn, rids) if not s.deleted]
    if version is not None:
        candidates = [c for c in candidates if c.get("version") == version]
    if not candidates:
        return None
    return max(candidates, key=lambda c: str(c.get("version", "")))


def by_id(conn: Connection, res_type: str, res_id: str) -> dict[str, Any]:
    stored: StoredResource | None = repository.get_current(conn, res_type, res_id)
    if stored is None or stored.deleted:
        raise NotFound(f"{res_type}/{res_id} is not known")
    return loads(stored.content)


def require(conn: Connection, res_type: str, url: str, version: str | None = None) -> dict[str, Any]:
    found = by_url(conn, res_type, url, version)
    if found is None:
        what = f"{url}|{version}" if version else url
        raise NotFound(f"No {res_type} with canonical URL '{what}' is known to this server")
    return found


def all_of(conn: Connection, res_type: str) -> list[dict[str, Any]]:
    """Every current resource of a terminology type (a few dozen ConceptMaps at most): for the
    operations that pick their resource by content (e.g. $translate by source and target)."""
    rows = conn.execute(select(resource.c.content).where(resource.c.res_type == res_type, live(resource)))
    return [loads(content) for (content,) in rows if content]
