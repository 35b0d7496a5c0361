"""The delivery loop of rest-hook Subscriptions: a background thread of `fhirsrv serve`.

Writes never wait for it: a write commits its change to the change log (storage/changes.py),
in its own transaction, and that is all. This loop then, in passes:
1. reads the live Subscriptions and their owners, and brings each one's state along: set up
   (its current matches) when new or when its criteria or owner changed, paused while `off`,
   turned `off` past its `end`, put in `error` when its owner's client was revoked;
2. matches the changes after each one's position in the change log (sync/matching.py) into
   its numbered events, committed with the new position: the outbox;
3. delivers, for each Subscription that is due, a handshake if one is owed, then its oldest
   events (up to BATCH_EVENTS in one notification), POSTing to its endpoint (sync/sender.py).
   Deliveries run on a few threads, one Subscription each, so a slow receiver holds its own
   thread for at most the timeout (FHIRSRV_SUBSCRIPTION_TIMEOUT) and the others go on.
A delivered notification's events are deleted; a failed one stays, and the Subscription waits
FHIRSRV_SUBSCRIPTION_RETRY_BASE_SECONDS, then twice as long each time (up to
FHIRSRV_SUBSCRIPTION_MAX_RETRY_SECONDS); after FHIRSRV_SUBSCRIPTION_MAX_FAILURES failures in
a row its status becomes `error` with the reason in `error`, and the next success makes it
`active` again. Status changes are new versions of the Subscription written through the write
path (its owner reads them, and its history shows them).

One process of a deployment runs a pass at a time (storage/locks.py: an advisory lock on
PostgreSQL, a lock file beside SQLite); the others skip their turn. A process wakes its own
loop when it commits a change, so a notification usually leaves within milliseconds of the
write; changes written by other processes are seen at the next poll
(FHIRSRV_SUBSCRIPTION_POLL_SECONDS). Delivery is at least once: a crash between a receiver's
200 and the deletion of the events sends them again, with the same event numbers.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, event, func, select, tuple_, update

from fhirsrv.access.principal import SERVER, Principal
from fhirsrv.auth.clients import get_client
from fhirsrv.errors import FhirError
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import Services
from fhirsrv.settings import allowed_origins
from fhirsrv.storage import repository
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.jsonfmt import format_instant, loads, utcnow
from fhirsrv.storage.locks import one_at_a_time
from fhirsrv.storage.repository import ConcurrentUpdate, StoredResource
from fhirsrv.storage.schema import change_log, live, resource, resource_owner, resource_version
from fhirsrv.sync import endpoints, matching, notifications, sender
from fhirsrv.sync.subscriptions import DELIVERY, TYPE, Channel, Criteria, parse_criteria, read_channel
from fhirsrv.sync.tables import subscription_event, subscription_state

log = logging.getLogger("fhirsrv.subscriptions")

# The loop's lock: its PostgreSQL advisory key and its SQLite lock file (storage/locks.py).
LOCK_KEY = 7_421  # not 7420: `fhirsrv db upgrade`'s
LOCK_NAME = "subscriptions"
# Events in one notification: a receiver back after an outage catches up in few requests.
BATCH_EVENTS = 100
# Matching steps per Subscription and pass (each BATCH changes): the pass then delivers.
STEPS_PER_PASS = 20
# Subscriptions delivered to at once: each waits on its own receiver.
DELIVERY_THREADS = 4
# Passes follow one another at least this far apart when woken by writes: a burst of writes
# is matched in one pass rather than one pass each.
MIN_PASS_SPACING = 0.02
ERROR_MAX = 1000
_CHANGE_LOG_INSERT = f"INSERT INTO {change_log.name} "
_WROTE_CHANGES = "fhirsrv_subscriptions_wrote"
_COMMITTED_CHANGES = "fhirsrv_subscriptions_committed"


@dataclass
class Subscription:
    """A live Subscription as the loop works with it."""

    rid: int
    res_id: str
    res: dict[str, Any]
    owner: str | None  # None: no owner recorded (not written by this server's write path)

    @property
    def status(self) -> str:
        return str(self.res.get("status") or "")

    @property
    def channel(self) -> Channel:
        return read_channel(self.res)

    def end(self) -> datetime | None:
        """When the server turns it off (R4 `end`, an instant), as naive UTC."""
        text = self.res.get("end")
        if not isinstance(text, str):
            return None
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when


@dataclass
class Report:
    """What one pass did."""

    subscriptions: int = 0
    matched: int = 0
    delivered: int = 0
    failed: int = 0
    more: bool = False  # work left for an immediate next pass
    next_due: datetime | None = None  # the earliest retry waiting


@dataclass
class _Work:
    sub: Subscription
    principal: Principal
    criteria: Criteria


class Delivery:
    """The loop of one process (`start`), or single passes (`run_pass`: tests, benchmarks)."""

    def __init__(
        self, services: Services, *, resolve: endpoints.Resolver = endpoints.system_resolver
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.resolve = resolve
        self.allowed = allowed_origins(self.settings.subscription_allowed_endpoints)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="fhirsrv-notify")
        self._listening = False

    # ------------------------------------------------------------------------------ the loop
    def start(self) -> threading.Thread:
        if not self._listening:
            for name, listener in self._listeners():
                event.listen(self.services.engine, name, listener)
            self._listening = True
        self._thread = threading.Thread(target=self._loop, name="fhirsrv-subscriptions", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listening:
            for name, listener in self._listeners():
                event.remove(self.services.engine, name, listener)
            self._listening = False
        self._pool.shutdown(wait=True)

    def wake(self) -> None:
        self._wake.set()

    # A transaction that wrote change-log rows (storage/changes.py writes them as it commits,
    # from its own commit listener) wakes the loop once it has committed: the commit event
    # comes before the database's commit, so the wake-up waits for the connection's return
    # to the pool, which follows it (a loop woken sooner could look before the rows exist).
    def _listeners(self) -> list[tuple[str, Any]]:
        return [
            ("after_cursor_execute", self._on_execute),
            ("commit", self._on_commit),
            ("rollback", self._on_rollback),
            ("checkin", self._on_checkin),
        ]

    def _on_execute(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(_CHANGE_LOG_INSERT):
            conn.info[_WROTE_CHANGES] = True

    def _on_commit(self, conn: Connection) -> None:
        if conn.info.pop(_WROTE_CHANGES, False):
            conn.info[_COMMITTED_CHANGES] = True

    def _on_rollback(self, conn: Connection) -> None:
        if conn.invalidated:  # a connection the database dropped has no info to reach
            return
        conn.info.pop(_WROTE_CHANGES, None)
        conn.info.pop(_COMMITTED_CHANGES, None)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        record.info.pop(_WROTE_CHANGES, None)
        if record.info.pop(_COMMITTED_CHANGES, False):
            self._wake.set()

    def _loop(self) -> None:
        poll = self.settings.subscription_poll_seconds
        wait = 0.0
        while not self._stop.is_set():
            if wait > 0:
                self._wake.wait(wait)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                report = self.run_pass()
            except Exception:  # the loop outlives a bad pass; the next one retries
                log.exception("subscription delivery pass failed")
                report = None
            wait = poll
            if report is not None and report.more:
                wait = MIN_PASS_SPACING
            elif report is not None and report.next_due is not None:
                until = (report.next_due - utcnow()).total_seconds()
                wait = min(poll, max(until, MIN_PASS_SPACING))
            self._stop.wait(MIN_PASS_SPACING)

    # ----------------------------------------------------------------------------- a pass
    def run_pass(self) -> Report | None:
        """One pass, or None when another process of the deployment is running one."""
        with one_at_a_time(self.services.engine, LOCK_NAME, LOCK_KEY) as mine:
            if not mine:
                return None
            return self._pass()

    def _pass(self) -> Report:
        report = Report()
        work: list[_Work] = []
        for sub in self._subscriptions():
            report.subscriptions += 1
            try:
                prepared = self._prepare(sub, report)
            except Exception:
                log.exception("subscription %s could not be matched in this pass", sub.res_id)
                continue
            if prepared is not None:
                work.append(prepared)
        due = [w for w in work if self._due(w, report)]
        for outcome in self._pool.map(self._deliver_safely, due):
            if outcome is None:
                continue
            if outcome:
                report.delivered += 1
            else:
                report.failed += 1
        return report

    def _subscriptions(self) -> list[Subscription]:
        with read_transaction(self.services.engine) as conn:
            rows = conn.execute(
                select(resource.c.rid, resource.c.res_id, resource.c.content, resource_owner.c.owner)
                .select_from(resource.outerjoin(resource_owner, resource_owner.c.rid == resource.c.rid))
                .where(resource.c.res_type == TYPE, live(resource))
                .order_by(resource.c.rid)
            ).all()
            found = [Subscription(r.rid, r.res_id, loads(r.content), r.owner) for r in rows]
            known = {r for (r,) in conn.execute(select(subscription_state.c.rid))}
        gone = sorted(known - {s.rid for s in found})
        if gone:  # deleted since the last pass
            with write_transaction(self.services.engine) as conn:
                matching.forget(conn, gone)
        return found

    def _prepare(self, sub: Subscription, report: Report) -> _Work | None:
        """Bring one Subscription's state along (module docstring, step 1) and match its
        changes (step 2); the work to deliver, or None when nothing is to be sent."""
        engine = self.services.engine
        # Reads first: a pass with nothing new for a Subscription opens no write transaction
        # (on SQLite each would take the database's one write lock from the requests).
        with read_transaction(engine) as conn:
            state = matching.read_state(conn, sub.rid)
            principal = self._principal(conn, sub.owner) if sub.status != "off" else None
        if sub.status == "off":
            if state is not None and state.criteria:
                with write_transaction(engine) as conn:
                    matching.pause(conn, sub.rid)
            return None
        end = sub.end()
        if end is not None and end <= utcnow():
            self._set_status(sub.rid, "off", None)
            return None
        if principal is None:
            self._set_status(
                sub.rid, "error", "the client that owns this Subscription was revoked: nothing is notified"
            )
            return None
        try:
            criteria = parse_criteria(sub.res.get("criteria"))
            stale = state is None or state.criteria != criteria.text or state.owner != (sub.owner or "")
            owed = sub.status == "requested" and (state is None or not state.handshake)
            if stale or owed:
                with write_transaction(engine) as conn:
                    if stale:
                        matching.set_up(
                            conn, self.services, sub.rid, sub.res_id, sub.owner or "", principal, criteria
                        )
                    if owed:
                        conn.execute(
                            update(subscription_state)
                            .where(subscription_state.c.rid == sub.rid)
                            .values(handshake=True)
                        )
        except FhirError as exc:  # a SearchParameter it used was removed since, say
            self._set_status(
                sub.rid, "error", _limited(f"its criteria can no longer be searched: {exc.diagnostics}")
            )
            return None
        for _ in range(STEPS_PER_PASS):
            with read_transaction(engine) as conn:
                state = matching.read_state(conn, sub.rid)
                assert state is not None
                if not matching.pending(conn, self.services, state, criteria):
                    break
            with write_transaction(engine) as conn:
                state = matching.read_state(conn, sub.rid)
                assert state is not None
                added, more = matching.step(
                    conn, self.services, state, principal, criteria, self.settings.subscription_max_queued
                )
            report.matched += added
            if not more:
                break
        else:
            report.more = True
        return _Work(sub, principal, criteria)

    def _due(self, work: _Work, report: Report) -> bool:
        with read_transaction(self.services.engine) as conn:
            state = matching.read_state(conn, work.sub.rid)
            if state is None:
                return False
            queued = conn.execute(
                select(func.count())
                .select_from(subscription_event)
                .where(subscription_event.c.subscription == work.sub.rid)
            ).scalar_one()
        owed = _handshake_owed(work.sub, state)
        if not owed and not queued:
            return False
        if state.next_attempt is not None and state.next_attempt > utcnow():
            report.next_due = min(filter(None, (report.next_due, state.next_attempt)))
            return False
        if queued > BATCH_EVENTS:
            report.more = True
        return True

    # ------------------------------------------------------------------------- delivering
    def _deliver_safely(self, work: _Work) -> bool | None:
        try:
            return self._deliver(work)
        except Exception:
            log.exception("subscription %s: delivery failed on the server's side", work.sub.res_id)
            return None

    def _deliver(self, work: _Work) -> bool:
        """Handshake if owed, then the oldest events; True when the receiver took them."""
        sub = work.sub
        engine = self.services.engine
        settings = self.settings
        with read_transaction(engine) as conn:
            state = matching.read_state(conn, sub.rid)
        if state is None:
            return False
        channel = sub.channel
        try:
            target = endpoints.check(channel.endpoint, self.allowed, self.resolve)
        except endpoints.EndpointRefused as exc:
            self._failed(sub, state, str(exc))
            return False
        status = sub.status
        if _handshake_owed(sub, state):
            body = notifications.body(
                base=settings.base_url,
                subscription_id=sub.res_id,
                status="requested",
                kind="handshake",
                events_since_start=state.events,
                now=utcnow(),
            )
            sent = sender.post(target, body, channel.headers, settings.subscription_timeout)
            if not sent.ok:
                self._failed(sub, state, f"handshake: {sent.error}")
                return False
            with write_transaction(engine) as conn:
                conn.execute(
                    update(subscription_state)
                    .where(subscription_state.c.rid == sub.rid)
                    .values(handshake=False, failures=0, next_attempt=None, last_error=None)
                )
            self._set_status(sub.rid, "active", None)
            log.info("subscription %s: handshake accepted, active", sub.res_id)
            status = "active"
            state = matching.State(**{**state.__dict__, "handshake": False, "failures": 0})
        with read_transaction(engine) as conn:
            rows = conn.execute(
                select(subscription_event)
                .where(subscription_event.c.subscription == sub.rid)
                .order_by(subscription_event.c.number)
                .limit(BATCH_EVENTS)
            ).all()
            events = [
                notifications.Event(**{k: v for k, v in r._mapping.items() if k != "subscription"})
                for r in rows
            ]
            resources = self._readable(conn, work.principal, events) if channel.content != "empty" else {}
        if not events:
            return True
        body = notifications.body(
            base=settings.base_url,
            subscription_id=sub.res_id,
            status=status,
            kind="event-notification",
            events_since_start=events[-1].number,
            events=events,
            content=channel.content,
            resources=resources,
            now=utcnow(),
        )
        sent = sender.post(target, body, channel.headers, settings.subscription_timeout)
        if not sent.ok:
            self._failed(sub, state, sent.error or "")
            return False
        with write_transaction(engine) as conn:
            conn.execute(
                delete(subscription_event).where(
                    subscription_event.c.subscription == sub.rid,
                    subscription_event.c.number <= events[-1].number,
                )
            )
            conn.execute(
                update(subscription_state)
                .where(subscription_state.c.rid == sub.rid)
                .values(failures=0, next_attempt=None, last_error=None)
            )
        if status == "error":
            self._set_status(sub.rid, "active", None)
            log.info("subscription %s: delivered again, active", sub.res_id)
        log.debug(
            "subscription %s: events %s to %s delivered", sub.res_id, events[0].number, events[-1].number
        )
        return True

    def _readable(
        self, conn: Connection, principal: Principal, events: list[notifications.Event]
    ) -> dict[tuple[int, int], str]:
        """The stored JSON of each event's version, for those the owner may read now, each as
        a vread would show it to the owner (`policy.visible_versions`: a version written while
        hidden is not sent, nor the contact persons of a structure that left the directory)."""
        wanted = sorted({(e.rid, e.version_id) for e in events if not e.deleted})
        if not wanted:
            return {}
        v = resource_version.c
        rows = conn.execute(
            select(v.rid, v.res_type, v.res_id, v.version_id, v.last_updated, v.deleted, v.content).where(
                tuple_(v.rid, v.version_id).in_(wanted), v.deleted.is_(False)
            )
        ).all()
        current = repository.get_many(conn, sorted({r.rid for r in rows}))
        existing = {c.rid for c in current if not c.deleted}
        versions = [
            StoredResource(r.rid, r.res_type, r.res_id, r.version_id, r.last_updated, r.deleted, r.content)
            for r in rows
            if r.rid in existing and r.content is not None
        ]
        shown = self.services.policy.visible_versions(conn, principal, versions)
        return {(s.rid, s.version_id): s.content for s in shown if s.content is not None}

    def _failed(self, sub: Subscription, state: matching.State, error: str) -> None:
        settings = self.settings
        failures = state.failures + 1
        delay = min(
            settings.subscription_retry_base_seconds * 2 ** min(failures - 1, 30),
            float(settings.subscription_max_retry_seconds),
        )
        now = utcnow()
        with write_transaction(self.services.engine) as conn:
            conn.execute(
                update(subscription_state)
                .where(subscription_state.c.rid == sub.rid)
                .values(
                    failures=failures, next_attempt=now + timedelta(seconds=delay), last_error=_limited(error)
                )
            )
        log.warning(
            "subscription %s: notification not delivered (%s failure(s) in a row), next attempt in %.3g s: %s",
            sub.res_id,
            failures,
            delay,
            error,
        )
        if failures >= settings.subscription_max_failures and sub.status != "error":
            self._set_status(
                sub.rid,
                "error",
                _limited(
                    f"{failures} deliveries failed in a row, the last at {format_instant(now)}: {error}"
                ),
            )

    def _set_status(self, rid: int, status: str, error: str | None) -> None:
        """A new version of the Subscription with this status (and error), written as the
        delivery loop; left as it is when a client changed it meanwhile to something this
        would undo (turned it off, or asked again)."""
        allowed_from = {
            "active": ("requested", "error"),
            "error": ("requested", "active"),
            "off": ("requested", "active", "error"),
        }
        for _ in range(3):
            try:
                with write_transaction(self.services.engine) as conn:
                    found = repository.get_many(conn, [rid])
                    if not found or found[0].deleted or found[0].content is None:
                        return
                    current: StoredResource = found[0]
                    res = loads(current.content)
                    if res.get("status") == status and res.get("error") == error:
                        return
                    if res.get("status") not in allowed_from[status]:
                        return
                    updated = {k: v for k, v in res.items() if k != "error"} | {"status": status}
                    if error:
                        updated["error"] = error
                    writes.replace(
                        self.services, conn, current, updated, "update", actor=DELIVERY, validated=True
                    )
                log.info("subscription %s: status %s", current.res_id, status)
                return
            except ConcurrentUpdate:
                continue

    def _principal(self, conn: Connection, owner: str | None) -> Principal | None:
        """Who the criteria are searched as: the owner's client as registered now (its role,
        perimeter and scopes); the server for what it created itself; None for a client that
        was revoked (nothing is notified to it any more)."""
        if owner is None or owner == "":
            return SERVER
        client = get_client(conn, owner)
        if client is None:
            return None
        return Principal.client(
            role=client.role,
            client_id=client.client_id,
            name=client.name,
            scope=client.scopes,
            departements=tuple(client.departements),
            organization=client.organization,
            kind=client.kind,
            communes=tuple(client.communes),
        )


def _handshake_owed(sub: Subscription, state: matching.State) -> bool:
    return sub.status == "requested" or (sub.status == "error" and state.handshake)


def _limited(text: str) -> str:
    return text[:ERROR_MAX]


# ---------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class QueueDepth:
    """Notifications numbered and not delivered yet, how old the oldest is, and Subscriptions
    by status."""

    events: int = 0
    oldest_seconds: float = 0.0
    subscriptions: dict[str, int] = field(default_factory=dict)


def queue_depth(conn: Connection, now: datetime | None = None) -> QueueDepth:
    count, oldest = conn.execute(select(func.count(), func.min(subscription_event.c.at))).one()
    now = now or utcnow()
    by_status: dict[str, int] = {}
    for (content,) in conn.execute(
        select(resource.c.content).where(resource.c.res_type == TYPE, live(resource))
    ):
        status = str(loads(content).get("status") or "")
        by_status[status] = by_status.get(status, 0) + 1
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return QueueDepth(int(count or 0), age, by_status)


def start(services: Services) -> Delivery | None:
    """The loop of this process, unless FHIRSRV_SUBSCRIPTION_DELIVERY is off."""
    if not services.settings.subscription_delivery:
        return None
    delivery = Delivery(services)
    delivery.start()
    return delivery
