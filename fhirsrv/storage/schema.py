"""The database schema: current and historical resource versions, plus search index tables.

`resource` holds the current version of each (type, id) with a surrogate integer key `rid` that
the index tables use: joining on one integer is what keeps chained searches cheap. The JSON is
stored as the exact text served to clients (meta included), so a read never re-parses it.
Index tables are written in the same transaction as the resource, from the SearchParameter
FHIRPath expressions (see fhirsrv/search/extract.py).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for large directories.
RowId = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("rid", RowId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The resource's JSON; compressed with LZ4 on PostgreSQL, here and in versions (migration 0016).
    Column("content", Text, nullable=True),
    # A directory entry's visibility (public | retired | hidden), copied from `entry_access`
    # (below) by the access facts in the same transaction, so that a search checks it on the
    # row it reads instead of probing another table per match. Hidden until the facts say
    # otherwise; not consulted for the types the access facts do not govern.
    Column("visibility", String(16), nullable=False, server_default="hidden"),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    # Live rows of a type in id order: what an unfiltered search pages and counts over.
    Index("ix_resource_type_live_rid", "res_type", "deleted", "rid"),
    # The same, of what anonymous callers (public) and partners (listed) may search: the
    # caller's visibility costs nothing on top of the live rows' order.
    Index(
        "ix_resource_public_rid",
        "res_type",
        "rid",
        postgresql_where=text("deleted = false AND visibility = 'public'"),
        sqlite_where=text("deleted = 0 AND visibility = 'public'"),
    ),
    Index(
        "ix_resource_listed_rid",
        "res_type",
        "rid",
        postgresql_where=text("deleted = false AND visibility <> 'hidden'"),
        sqlite_where=text("deleted = 0 AND visibility <> 'hidden'"),
    ),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("rid", RowId, ForeignKey("resource.rid"), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # create | update | patch | delete: what produced this version (Bundle.entry.request.method).
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
    Index("ix_version_updated", "last_updated"),
    Index("ix_version_type_updated", "res_type", "last_updated"),
)

# Every change to an entry, in commit order: a new version, or a change of its visibility alone
# (its structure was delisted, say). Written in the change's own transaction just before it
# commits, under one lock (storage/changes.py), so `seq` orders changes as they became visible:
# a reader that resumes after the last `seq` it saw never skips a change that committed late.
# History for syncing clients, subscriptions and their event numbers read it.
change_log = Table(
    "change_log",
    metadata,
    Column("seq", RowId, primary_key=True, autoincrement=True),
    Column("rid", RowId, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    # The version current after the change (a new one, or the same one with a new visibility).
    Column("version_id", Integer, nullable=False),
    Column("new_version", Boolean, nullable=False),
    # The entry's visibility when the change committed, and after the previous change (None:
    # its first change) -- enough to tell an anonymous reader that an entry left the public.
    Column("visibility", String(16), nullable=False),
    Column("previous_visibility", String(16), nullable=True),
    # When the change committed (taken under the lock, so it grows with `seq`).
    Column("at", DateTime, nullable=False),
    Index("ix_change_log_rid_seq", "rid", "seq"),
    Index("ix_change_log_type_seq", "res_type", "seq"),
    Index("ix_change_log_at", "at"),
)

# ---------------------------------------------------------------------------- search indexes
# Every index row carries (rid, res_type, param): a search parameter compiles to
# `rid IN (SELECT rid FROM idx_x WHERE res_type = :t AND param = :p AND <value test>)`.
#
# `rid` is deliberately not a foreign key. Index rows are derived data (`fhirsrv reindex`
# rebuilds them), written and removed by rid with their resource's row in one transaction
# (search/engine.py), and no code deletes a `resource` row: a FHIR delete is a version. The
# key's check cost PostgreSQL a lookup and a lock of the resource row for every index row,
# about 45 rows a resource: half of the database's CPU in a bulk load (migration 0015).


def _index_table(
    name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...] = (), include: tuple[str, ...] = ()
) -> Table:
    table = Table(
        name,
        metadata,
        Column("rid", RowId, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        Index(f"ix_{name}_rid", "rid"),
    )
    for cols in indexes:
        # rid last: a search reads matching rids from the index alone, and a check of one
        # resource (search/walk.py) is an exact probe instead of a scan of the value's rows.
        # `include`: columns a search filters on without leaving the index (PostgreSQL).
        Index(f"ix_{name}_{'_'.join(cols)}_rid", *cols, "rid", _table=table, postgresql_include=list(include))
    return table


idx_string = _index_table(
    "idx_string",
    # value_norm: lower-cased, accents stripped (search default); value_exact: as written.
    Column("value_norm", String(512), nullable=False),
    Column("value_exact", String(512), nullable=False),
    indexes=(("res_type", "param", "value_norm"),),
)

idx_token = _index_table(
    "idx_token",
    Column("system", String(512), nullable=True),
    Column("code", String(256), nullable=True),
    # Normalised display / text, for the :text modifier.
    Column("text_norm", String(512), nullable=True),
    # Whether the resource is public (resource.visibility = 'public'), kept by the access
    # facts like that column: a search on one code (search/walk.py, the ROR consumers'
    # commonest query) reads an anonymous caller's matches and their count from this index
    # alone. Not one of the values the indexer writes (`info["derived"]`); false until the
    # facts say otherwise.
    Column("public", Boolean, nullable=False, server_default=false(), info={"derived": True}),
    indexes=(("res_type", "param", "code", "system"),),
    include=("public",),
)

idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    # Absolute or canonical URL when the reference is not local (and canonical version, if any);
    # for a versioned local reference, that reference ("Type/id/_history/v").
    Column("url", String(1024), nullable=True),
    # Reference.identifier for the :identifier modifier.
    Column("ident_system", String(512), nullable=True),
    Column("ident_value", String(256), nullable=True),
    indexes=(("res_type", "param", "target_type", "target_id"), ("target_type", "target_id", "param")),
)

idx_date = _index_table(
    "idx_date",
    # The instant range [low, high] that the indexed value covers (a partial date is a range).
    Column("low", DateTime, nullable=False),
    Column("high", DateTime, nullable=False),
    indexes=(("res_type", "param", "low"), ("res_type", "param", "high")),
)

idx_number = _index_table(
    "idx_number",
    # number and quantity: the value with its implicit precision range; quantity system/code.
    Column("value", Numeric(asdecimal=False), nullable=False),
    Column("low", Numeric(asdecimal=False), nullable=False),
    Column("high", Numeric(asdecimal=False), nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(128), nullable=True),
    indexes=(("res_type", "param", "value"),),
)

idx_uri = _index_table(
    "idx_uri",
    Column("value", String(1024), nullable=False),
    indexes=(("res_type", "param", "value"),),
)

idx_geo = _index_table(
    "idx_geo",
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    indexes=(("res_type", "latitude", "longitude"),),
)

# Ordering key per (resource, sort parameter): the smallest value, so _sort is one join.
idx_sort = _index_table(
    "idx_sort",
    Column("value_text", String(512), nullable=True),
    Column("value_num", Float, nullable=True),
    Column("value_date", DateTime, nullable=True),
    indexes=(("res_type", "param", "value_text"),),
)

# ------------------------------------------------------------------------------- terminology
# Subsumption closure: (system, ancestor, descendant), including each code with itself.
code_closure = Table(
    "code_closure",
    metadata,
    Column("system", String(512), nullable=False),
    Column("ancestor", String(256), nullable=False),
    Column("descendant", String(256), nullable=False),
    Index("ix_code_closure_anc", "system", "ancestor"),
    Index("ix_code_closure_desc", "system", "descendant"),
)

# Client closure tables of ConceptMap/$closure, named by each client: the header row is the
# table's version counter (and the row a call locks, so concurrent calls on one table queue);
# each concept the client sent is one member row, stamped with the version that added it. The
# relationships are not stored: they are the code_closure rows between members.
closure_table = Table(
    "closure_table",
    metadata,
    # The OAuth client id of the owner ('' when the server runs without authorization).
    Column("owner", String(64), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("created", DateTime, nullable=False),
)

closure_member = Table(
    "closure_member",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("system", String(512), primary_key=True),
    Column("code", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(
        ["owner", "name"], ["closure_table.owner", "closure_table.name"], ondelete="CASCADE"
    ),
)

# ------------------------------------------------------------------------------ access facts
# Who may see a directory entry is decided per structure (fhirsrv/access): these two tables
# hold, per live resource, what that decision needs, written in the write's own transaction, so
# that a visibility test is one index probe in a search, a read or a history page.
entry_access = Table(
    "entry_access",
    metadata,
    Column("rid", RowId, ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
    Column("res_type", String(64), nullable=False),
    # The entry's own lifecycle status (None: it has none and follows its structure).
    Column("status", String(64), nullable=True),
    # The Organization id the entry belongs to (its own id for an Organization).
    Column("structure", String(64), nullable=True),
    # A PractitionerRole's Practitioner id: a person is visible through a visible role.
    Column("person", String(64), nullable=True),
    # A Location's commune (INSEE code, ROR commune-cog): a DAC's territory may be communes.
    Column("commune", String(8), nullable=True),
    # public | retired | hidden, derived from the status of the entry and of its structure.
    Column("visibility", String(16), nullable=False),
    # Shown to every reader once: public here at some time, or its lifecycle record says so (a
    # publication, a delisting). Only such an entry is `retired` when it leaves the directory;
    # an application withdrawn before it was ever listed stays hidden (access/facts_store.py).
    Column("listed", Boolean, nullable=False, server_default=text("false")),
    Index("ix_entry_access_type_visibility_rid", "res_type", "visibility", "rid"),
    # A search checks each candidate row against the caller's visibility: these partial
    # indexes make that probe index-only on a small index (2 µs a row instead of 5 at 100k).
    Index(
        "ix_entry_access_public",
        "rid",
        "res_type",
        postgresql_where=text("visibility = 'public'"),
        sqlite_where=text("visibility = 'public'"),
    ),
    Index(
        "ix_entry_access_listed",
        "rid",
        "res_type",
        postgresql_where=text("visibility <> 'hidden'"),
        sqlite_where=text("visibility <> 'hidden'"),
    ),
    Index("ix_entry_access_structure_type_rid", "structure", "res_type", "rid"),
    Index("ix_entry_access_person", "person"),
    Index("ix_entry_access_commune", "commune", "structure"),
)

# The départements an Organization is located in: the territory a territorial admin reads and
# writes. One row per (structure, département).
structure_territory = Table(
    "structure_territory",
    metadata,
    Column("structure", String(64), primary_key=True),
    Column("departement", String(8), primary_key=True),
    Index("ix_structure_territory_departement", "departement", "structure"),
)

# The client each resource of an owned type belongs to (resource_types.OWNED_TYPES: a
# Subscription), written with the resource's first version in its own transaction and kept
# while the resource lives: the access policy shows such a resource to its owner only, as one
# index probe (fhirsrv/access/owners.py). '' : created by the server itself (authorization off,
# a file load).
resource_owner = Table(
    "resource_owner",
    metadata,
    Column("rid", RowId, ForeignKey("resource.rid", ondelete="CASCADE"), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("owner", String(64), nullable=False),
    Index("ix_resource_owner_owner_type", "owner", "res_type", "rid"),
)

# ----------------------------------------------------------------------- business identifiers
# The directory's own identifiers (systems under the canonical base's /sid/) held by live
# resources: one row per (type, identifier), so the database itself refuses a second holder,
# even to two concurrent writers (fhirsrv/storage/identifiers.py). The key is a digest of
# (system, value): an identifier of any length fits a B-tree entry.
resource_identifier = Table(
    "resource_identifier",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("rid", RowId, ForeignKey("resource.rid", ondelete="CASCADE"), nullable=False),
    Column("system", Text, nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_resource_identifier_rid", "rid"),
)

# ------------------------------------------------------------------------------------ outbox
# E-mails of the inclusion procedure (fhirsrv/workflow/outbox.py), written in the transaction of
# the transition that causes them: a message exists if and only if its transition committed, and
# a delivery loop sends it later, retrying, so an SMTP failure neither loses it nor fails the
# transition.
outbox = Table(
    "outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("created", DateTime, nullable=False),
    Column("template", String(64), nullable=False),
    # JSON list of addresses; JSON object of strings (the template's placeholders).
    Column("recipients", Text, nullable=False),
    Column("context", Text, nullable=False),
    # The directory entry the message is about, e.g. "Organization/abc".
    Column("entry", String(128), nullable=True),
    # Enqueuing a key that exists stores nothing: a sweep that runs twice sends nothing twice.
    Column("dedupe_key", String(256), nullable=True),
    # pending | sending | sent | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # When a pending message is due; while sending, when its claim lapses (a process died).
    Column("next_attempt", DateTime, nullable=False),
    # The last failure, without any address.
    Column("last_error", Text, nullable=True),
    Column("sent", DateTime, nullable=True),
    UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
    Index("ix_outbox_status_next_attempt", "status", "next_attempt"),
)

# --------------------------------------------------------------------------------- server state
server_state = Table(
    "server_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=True),
    Column("blob", LargeBinary, nullable=True),
)

INDEX_TABLES = (idx_string, idx_token, idx_reference, idx_date, idx_number, idx_uri, idx_geo, idx_sort)


def live(table: Table) -> ColumnElement[bool]:
    """`deleted = false`: unlike `deleted IS false`, an index condition on (res_type, deleted, rid),
    so a search in rid order reads the live rows of one type straight from that index instead
    of walking the primary key past every other type (20 ms against 0.1 at 100k resources)."""
    return table.c.deleted == false()
