"""The delivery state of each Subscription: how far it has read the change log, what matched
its criteria at its last notification, and the notifications not yet delivered.

The Subscription itself is a resource (versioned, readable by its owner); this is the server's
bookkeeping beside it, written by the delivery loop (sync/delivery.py) only. A restart resumes
from it: the events queued here were numbered and committed with the change-log position they
came from, in one transaction, so none is lost or numbered twice.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text

from fhirsrv.storage.schema import RowId, metadata

subscription_state = Table(
    "subscription_state",
    metadata,
    Column("rid", RowId, ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
    Column("res_id", String(64), nullable=False),
    # The owner (client id) and criteria the membership below was computed for: when either
    # changes, the membership is computed again ('' criteria: not set up, or paused while off).
    Column("owner", String(64), nullable=False),
    Column("criteria", Text, nullable=False),
    # The change log's `seq` read up to: every change after it is still to be matched.
    Column("last_seq", BigInteger, nullable=False),
    # Event numbers handed out so far (R5/Backport eventsSinceSubscriptionStart): the next
    # event is events + 1, so a receiver that sees a number skip knows it missed some.
    Column("events", BigInteger, nullable=False),
    # A handshake is owed (the Subscription was requested and has not been answered yet).
    Column("handshake", Boolean, nullable=False),
    # Consecutive failed deliveries, and when the next one may be tried (exponential backoff).
    Column("failures", Integer, nullable=False),
    Column("next_attempt", DateTime, nullable=True),
    # The last failure, in the server's own words (never a header value nor the receiver's body).
    Column("last_error", Text, nullable=True),
)

# What matched the criteria (with the owner's access) at the last notification: a change to
# one of these notifies even when the entry no longer matches, so the receiver learns it left.
subscription_member = Table(
    "subscription_member",
    metadata,
    Column("subscription", RowId, ForeignKey("subscription_state.rid", ondelete="CASCADE"), primary_key=True),
    Column("rid", RowId, primary_key=True),
)

# Notifications numbered and not yet delivered, oldest first: the subscription's outbox.
subscription_event = Table(
    "subscription_event",
    metadata,
    Column("subscription", RowId, ForeignKey("subscription_state.rid", ondelete="CASCADE"), primary_key=True),
    Column("number", BigInteger, primary_key=True),
    Column("rid", RowId, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    # The version current when the change was matched, and whether it is a deletion.
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    # Whether the entry matched the criteria then (else: it left them, or was deleted), and
    # whether the changes it stands for include the entry's creation.
    Column("matches", Boolean, nullable=False),
    Column("created", Boolean, nullable=False),
    # When the change committed (the change log's `at`), the notification event's timestamp.
    Column("at", DateTime, nullable=False),
)
