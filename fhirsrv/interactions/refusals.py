"""Refused write attempts leave an AuditEvent too (outcome 4, with the reason).

The refused request's own transaction is rolled back with everything it did, so the event is
written afterwards, in a transaction of its own, by the interaction's outermost frame: the
one that opened the transaction (never inside a Bundle entry's or the loader's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from fhirsrv.errors import Forbidden, Unauthorized
from fhirsrv.interactions.context import RequestInfo, Services


@contextmanager
def audited(
    services: Services, info: RequestInfo, interaction: str, target: str, conn: Connection | None = None
) -> Iterator[None]:
    """`conn`: the caller's transaction, if any (then the caller audits the refusal)."""
    try:
        yield
    except (Unauthorized, Forbidden) as refusal:
        if conn is None and interaction not in ("get", "head"):
            services.audit.refused(services.engine, info.principal, interaction, target, refusal.diagnostics)
        raise
