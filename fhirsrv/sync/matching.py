"""From the change log to a Subscription's numbered events (its outbox, sync/tables.py).

A change notifies a Subscription when the entry matches its criteria after the change, or
matched them at the Subscription's last notification about it (so the receiver learns it
left them: deleted, delisted, moved out of the criteria). "Matches" is decided by the search
engine itself, running the criteria with `_id` narrowed to the changed entries, under the
owner's access (what the owner's own search would find); "matched before" is the
`subscription_member` table, kept by the same step.

A criterion that reads through a reference (a chain, `organization.name=…`, or a parameter
defined as one, `departement` = `location.departement`) may change what matches without the
entry changing: its Location moved. So a step also reads the changes of the types such a chain
reaches one reference away (`links`), and checks again the entries that refer to the changed
ones. Further (two references away, or `_has`, `_filter` paths), an entry is checked again at
its own next change only.

Each step reads a batch of the change log after the Subscription's position, for these
types, and writes in one transaction: the events (numbered on from the last one),
the members, and the new position. A crash before the commit leaves everything as it was (the
batch is read again); after, nothing of it is read again. So a restart loses no change and
numbers none twice. Several changes of one entry in a batch give one event (its state now).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from fhirsrv.access.principal import Principal
from fhirsrv.interactions.context import Services
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.parameters import parse
from fhirsrv.search.registry import SearchParamRegistry
from fhirsrv.storage import changes
from fhirsrv.storage.schema import idx_reference, resource
from fhirsrv.sync.subscriptions import Criteria
from fhirsrv.sync.tables import subscription_event, subscription_member, subscription_state

log = logging.getLogger("fhirsrv.subscriptions")

# Changes read per step: one transaction each, short enough not to hold SQLite's writer long.
BATCH = 500


@dataclass(frozen=True)
class State:
    rid: int
    res_id: str
    owner: str
    criteria: str
    last_seq: int
    events: int
    handshake: bool
    failures: int
    next_attempt: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Link:
    """Changes of `res_type` may change what the criteria match: the criteria's entries refer
    to such an entry through their reference parameter `param`."""

    res_type: str
    param: str


def links(registry: SearchParamRegistry, criteria: Criteria) -> list[Link]:
    """The types the criteria's chains reach one reference away, and through which parameter."""
    found: list[Link] = []
    for name, value in criteria.params:
        crit = parse(name, value)
        param = registry.get(criteria.res_type, crit.name)
        if param is None:
            continue
        if crit.chain and param.type == "reference":
            hop, typed = param, crit.modifier
        elif param.via:
            hop, typed = registry.get(criteria.res_type, param.via.split(".", 1)[0]), None
        else:
            continue
        if hop is None or hop.type != "reference":
            continue
        for target in [typed] if typed else hop.target:
            link = Link(target, hop.code)
            if target in SUPPORTED_TYPES and link not in found:
                found.append(link)
    return found


def read_state(conn: Connection, rid: int) -> State | None:
    row = conn.execute(select(subscription_state).where(subscription_state.c.rid == rid)).first()
    return State(**row._mapping) if row is not None else None


def set_up(
    conn: Connection,
    services: Services,
    rid: int,
    res_id: str,
    owner: str,
    principal: Principal,
    criteria: Criteria,
) -> None:
    """Start (or restart, the criteria or owner having changed) from now: the position is the
    change log's last change, read before the members are searched, so that a change committed
    in between is both in the members (perhaps) and after the position (surely): matched again,
    never missed. Event numbers go on from where they were."""
    start = changes.last_seq(conn)
    members = services.search.matching(
        conn, criteria.res_type, list(criteria.params), services.policy.scope(principal)
    )
    known = read_state(conn, rid)
    conn.execute(delete(subscription_member).where(subscription_member.c.subscription == rid))
    values = {"res_id": res_id, "owner": owner, "criteria": criteria.text, "last_seq": start}
    if known is None:
        conn.execute(
            insert(subscription_state).values(rid=rid, events=0, handshake=True, failures=0, **values)
        )
    else:
        conn.execute(update(subscription_state).where(subscription_state.c.rid == rid).values(**values))
    _insert_members(conn, rid, sorted(members))
    log.info("subscription %s set up: %s entries match its criteria", res_id, len(members))


def pause(conn: Connection, rid: int) -> None:
    """Off: nothing is matched nor kept until the Subscription is requested again, which sets it
    up from then (its event numbers go on)."""
    conn.execute(delete(subscription_member).where(subscription_member.c.subscription == rid))
    conn.execute(delete(subscription_event).where(subscription_event.c.subscription == rid))
    conn.execute(
        update(subscription_state)
        .where(subscription_state.c.rid == rid)
        .values(criteria="", failures=0, next_attempt=None, last_error=None)
    )


def forget(conn: Connection, rids: list[int]) -> None:
    """The state of Subscriptions that were deleted."""
    for table, column in (
        (subscription_event, subscription_event.c.subscription),
        (subscription_member, subscription_member.c.subscription),
        (subscription_state, subscription_state.c.rid),
    ):
        conn.execute(delete(table).where(column.in_(rids)))


def _types(services: Services, criteria: Criteria) -> tuple[list[str], list[Link]]:
    """The types whose changes a step reads (the criteria's, then those its chains reach)."""
    reached = links(services.search.registry, criteria)
    return [criteria.res_type, *dict.fromkeys(link.res_type for link in reached)], reached


def pending(conn: Connection, services: Services, state: State, criteria: Criteria) -> bool:
    """Whether the change log holds changes after the Subscription's position for it (one
    index probe): a step, and its write transaction, only then."""
    services.search.ensure_current(conn)
    types, _ = _types(services, criteria)
    return bool(changes.after(conn, state.last_seq, limit=1, res_types=types))


def step(
    conn: Connection,
    services: Services,
    state: State,
    principal: Principal,
    criteria: Criteria,
    max_queued: int,
) -> tuple[int, bool]:
    """Match one batch of changes; (events queued, whether the change log may hold more)."""
    services.search.ensure_current(conn)
    types, reached = _types(services, criteria)
    rows = changes.after(conn, state.last_seq, limit=BATCH, res_types=types)
    if not rows:
        return 0, False
    # The last change of each entry of the criteria's type in the batch, its own or (for an
    # entry a chain reads through) one of the entry it refers to.
    latest: dict[int, _Change] = {}
    for row in rows:
        if row.res_type == criteria.res_type:
            latest[row.rid] = _Change(row.seq, row.res_type, row.res_id, row.version_id, row.at)
    for rid, change in _through_links(conn, criteria, reached, rows).items():
        if rid not in latest or latest[rid].seq < change.seq:
            latest[rid] = change
    created = {
        row.rid
        for row in rows
        if row.res_type == criteria.res_type and row.new_version and row.version_id == 1
    }
    rids = sorted(latest)
    if not rids:
        conn.execute(
            update(subscription_state)
            .where(subscription_state.c.rid == state.rid)
            .values(last_seq=rows[-1].seq)
        )
        return 0, len(rows) == BATCH
    scope = services.policy.scope(principal)
    now = services.search.matching(conn, criteria.res_type, list(criteria.params), scope, rids)
    before = {
        r
        for (r,) in conn.execute(
            select(subscription_member.c.rid).where(
                subscription_member.c.subscription == state.rid, subscription_member.c.rid.in_(rids)
            )
        )
    }
    current = {
        row.rid: row
        for row in conn.execute(
            select(resource.c.rid, resource.c.res_id, resource.c.version_id, resource.c.deleted).where(
                resource.c.rid.in_(rids)
            )
        )
    }
    number = state.events
    events = []
    for rid, change in sorted(latest.items(), key=lambda item: (item[1].seq, item[0])):
        if rid not in now and rid not in before:
            continue
        row = current.get(rid)
        number += 1
        events.append(
            {
                "subscription": state.rid,
                "number": number,
                "rid": rid,
                "res_type": change.res_type,
                "res_id": change.res_id,
                "version_id": row.version_id if row is not None else change.version_id,
                "deleted": bool(row.deleted) if row is not None else True,
                "matches": rid in now,
                "created": rid in created,
                "at": change.at,
            }
        )
    if events:
        conn.execute(insert(subscription_event), events)
    _insert_members(conn, state.rid, sorted(now - before))
    leaving = sorted(before - now)
    if leaving:
        conn.execute(
            delete(subscription_member).where(
                subscription_member.c.subscription == state.rid, subscription_member.c.rid.in_(leaving)
            )
        )
    conn.execute(
        update(subscription_state)
        .where(subscription_state.c.rid == state.rid)
        .values(last_seq=rows[-1].seq, events=number)
    )
    if events:
        _trim(conn, state, max_queued)
    return len(events), len(rows) == BATCH


@dataclass(frozen=True)
class _Change:
    seq: int
    res_type: str
    res_id: str
    version_id: int
    at: datetime


def _through_links(
    conn: Connection, criteria: Criteria, reached: list[Link], rows: list[changes.Change]
) -> dict[int, _Change]:
    """The entries of the criteria's type that refer to entries changed in `rows` through a
    linked parameter, each with the last such change (its position and time)."""
    found: dict[int, _Change] = {}
    r = idx_reference.c
    for link in reached:
        changed: dict[str, changes.Change] = {
            row.res_id: row for row in rows if row.res_type == link.res_type
        }
        if not changed:
            continue
        ids = sorted(changed)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            referring = conn.execute(
                select(r.rid, r.target_id, resource.c.res_id, resource.c.version_id)
                .join(resource, resource.c.rid == r.rid)
                .where(
                    r.res_type == criteria.res_type,
                    r.param == link.param,
                    r.target_type == link.res_type,
                    r.target_id.in_(chunk),
                )
            )
            for rid, target, res_id, version_id in referring:
                cause = changed[target]
                if rid not in found or found[rid].seq < cause.seq:
                    found[rid] = _Change(cause.seq, criteria.res_type, res_id, version_id, cause.at)
    return found


def _trim(conn: Connection, state: State, max_queued: int) -> None:
    """Past `max_queued` undelivered events, the oldest go: the receiver sees the gap in the
    event numbers and catches up from `_history`, instead of the table growing without end
    while it is down."""
    queued = conn.execute(
        select(func.count())
        .select_from(subscription_event)
        .where(subscription_event.c.subscription == state.rid)
    ).scalar_one()
    if queued <= max_queued:
        return
    cut = conn.execute(
        select(subscription_event.c.number)
        .where(subscription_event.c.subscription == state.rid)
        .order_by(subscription_event.c.number.desc())
        .offset(max_queued)
        .limit(1)
    ).scalar_one()
    conn.execute(
        delete(subscription_event).where(
            subscription_event.c.subscription == state.rid, subscription_event.c.number <= cut
        )
    )
    log.warning(
        "subscription %s: %s notifications undelivered, the oldest %s dropped (its receiver sees a gap)",
        state.res_id,
        queued,
        queued - max_queued,
    )


def _insert_members(conn: Connection, subscription: int, rids: list[int]) -> None:
    for start in range(0, len(rids), 1000):
        chunk = rids[start : start + 1000]
        conn.execute(insert(subscription_member), [{"subscription": subscription, "rid": r} for r in chunk])
