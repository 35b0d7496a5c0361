"""entry_access.listed: only an entry listed once is `retired` when it leaves the directory

An application withdrawn before it was ever published was `retired` like a delisted entry:
readable by id by anyone, and searched by partners, though nobody outside the structure and
its administrators had ever seen it. Only an entry shown once to every reader may be cited,
so only such an entry is still read by id once it has left (access/facts_store.py).

Existing rows are marked listed when they are public now, delisted (only a listed entry
becomes so), public at some change the change log recorded (an offer without a record of its
own is public through its structure), or withdrawn with a listed past in their history: a
version published, pending verification or delisted, or holding the region's publication
(`regionValidatedOn`). The server hides the other withdrawn entries, with what depends on
them, when it next starts, and clears their past visibility from the change log
(`FactStore.hide_never_listed`, `changes.forget_shown`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 09:10:00
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# The lifecycle extension's URL under any canonical base, and what in it shows a listed past.
_LIFECYCLE_SUFFIX = "/StructureDefinition/sos-entry-lifecycle"
_LISTED_STATUSES = {"published", "verification-pending", "delisted"}


def _was_listed(content: str | None) -> bool:
    res = json.loads(content) if content else {}
    for ext in res.get("extension") or []:
        if isinstance(ext, dict) and str(ext.get("url", "")).endswith(_LIFECYCLE_SUFFIX):
            for part in ext.get("extension") or []:
                if not isinstance(part, dict):
                    continue
                if part.get("url") == "regionValidatedOn":
                    return True
                if part.get("url") == "status" and part.get("valueCode") in _LISTED_STATUSES:
                    return True
    return False


def upgrade() -> None:
    op.add_column("entry_access", sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE entry_access SET listed = true WHERE visibility = 'public' OR status = 'delisted'"
        " OR rid IN (SELECT rid FROM change_log WHERE visibility = 'public')"
    )
    bind = op.get_bind()
    withdrawn = [
        rid for (rid,) in bind.execute(sa.text("SELECT rid FROM entry_access WHERE status = 'withdrawn' AND NOT listed"))
    ]
    listed: set[int] = set()
    for start in range(0, len(withdrawn), 500):
        chunk = withdrawn[start : start + 500]
        versions = sa.text("SELECT rid, content FROM resource_version WHERE rid IN :rids").bindparams(
            sa.bindparam("rids", expanding=True)
        )
        rows: Any = bind.execute(versions, {"rids": chunk})
        listed.update(rid for rid, content in rows if rid not in listed and _was_listed(content))
    marked = sorted(listed)
    for start in range(0, len(marked), 500):
        mark = sa.text("UPDATE entry_access SET listed = true WHERE rid IN :rids").bindparams(
            sa.bindparam("rids", expanding=True)
        )
        bind.execute(mark, {"rids": marked[start : start + 500]})


def downgrade() -> None:
    op.drop_column("entry_access", "listed")
