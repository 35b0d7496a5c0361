"""Resources that belong to one client (resource_types.OWNED_TYPES: a Subscription).

A Subscription names an endpoint and the headers sent there (often a bearer token of the
receiving system): it is the business of the client that created it and of nobody else, a
regional administrator included. So, unlike a directory entry, its visibility is not derived
from its content but from who created it, recorded in `resource_owner` with its first version,
in the write's own transaction (`record`), and never changed by a later write (the owner is
not content a client could edit). Every read path asks `condition`, as SQL on a row id, so a
search, a history page and a read by id hide the others' alike; a resource without a row (or
of another owner) is, to a client, a resource that does not exist.

The server itself (SERVER: a file load, or every caller when authorization is off) sees them
all; what it creates is owned by '' (no client).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, false, insert, select

from fhirsrv.access.principal import Principal, Role
from fhirsrv.resource_types import OWNED_TYPES
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import resource_owner

SERVER_OWNER = ""


def owner_of(principal: Principal) -> str:
    return SERVER_OWNER if principal.role is Role.SERVER else principal.client_id


def condition(principal: Principal, res_type: str, rid: Any) -> ColumnElement[bool] | None:
    """The rows of an owned type the principal may see (None: all of them, for the server)."""
    if principal.role is Role.SERVER:
        return None
    if principal.is_anonymous or not principal.client_id:
        return false()
    mine = select(resource_owner.c.rid).where(
        resource_owner.c.owner == principal.client_id, resource_owner.c.res_type == res_type
    )
    return rid.in_(mine)


def owns(conn: Connection, principal: Principal, stored: StoredResource) -> bool:
    if principal.role is Role.SERVER:
        return True
    if principal.is_anonymous or not principal.client_id:
        return False
    found = conn.execute(
        select(resource_owner.c.rid).where(
            resource_owner.c.rid == stored.rid, resource_owner.c.owner == principal.client_id
        )
    ).first()
    return found is not None


def owner(conn: Connection, rid: int) -> str | None:
    """The owner recorded for a resource (None: no row)."""
    return conn.execute(select(resource_owner.c.owner).where(resource_owner.c.rid == rid)).scalar()


def record(conn: Connection, stored: StoredResource, principal: Principal) -> None:
    """Note the creator of a new resource of an owned type. A resource that has an owner keeps
    it (a deleted Subscription written again by the server stays its first owner's)."""
    if stored.res_type not in OWNED_TYPES:
        return
    if owner(conn, stored.rid) is not None:
        return
    conn.execute(
        insert(resource_owner).values(rid=stored.rid, res_type=stored.res_type, owner=owner_of(principal))
    )
