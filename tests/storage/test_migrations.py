"""The migrations build exactly the schema the code declares, and the last one can be undone."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select, text

import fhirsrv.auth.tables  # noqa: F401  (its tables hang on the same metadata)
import fhirsrv.sync.export_tables  # noqa: F401  (likewise)
import fhirsrv.sync.tables  # noqa: F401  (likewise)
import fhirsrv.workflow.tables  # noqa: F401  (likewise)
from fhirsrv.access.principal import SERVER
from fhirsrv.canonical import Canonicals
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from fhirsrv.storage import repository
from fhirsrv.storage.migrate import alembic_config, current, ensure_schema, upgrade
from fhirsrv.storage.schema import change_log, entry_access, metadata, resource
from fhirsrv.wiring import build_services
from tests.conftest import ONLY_POSTGRES


def _differences(engine: Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_migrated_database_matches_the_declared_schema(engine: Engine):
    ensure_schema(engine)
    assert _differences(engine) == []


def test_the_last_migration_goes_down_and_up_again(engine: Engine):
    ensure_schema(engine)
    head = current(engine)
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, "-1")
    assert current(engine) != head
    upgrade(engine, "head")
    assert current(engine) == head and _differences(engine) == []


def _downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_0017_hides_applications_withdrawn_before_listing_and_keeps_entries_withdrawn_after(db_url: str) -> None:
    """Before 0017 every withdrawn entry was `retired`: readable by id by anyone. After it, and the
    next start, only one with a listed past is: an offer published then withdrawn on its own
    (its record holds no publication, its history does), and one public through its structure
    without a record of its own (the change log saw it public). A structure withdrawn while
    still an application is hidden, with its offer, and the change log no longer gives their
    content to a partner syncing from the start: only their removal."""
    settings = Settings.from_env(database_url=db_url, load_demo=False)
    url = Canonicals(settings.canonical_base).entry_lifecycle

    def entry(res_type: str, res_id: str, status: str | None, owner: str | None = None) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": res_type, "id": res_id, "name": res_id}
        if status:
            res["extension"] = [{"url": url, "extension": [{"url": "status", "valueCode": status}]}]
        if owner:
            res["providedBy"] = {"reference": f"Organization/{owner}"}
        return res

    first = [
        entry("Organization", "listed", "published"),
        entry("HealthcareService", "left", "published", "listed"),
        entry("HealthcareService", "bare", None, "listed"),
        entry("Organization", "applied", "submitted"),
        entry("HealthcareService", "applied-offer", "submitted", "applied"),
    ]
    withdrawn = {res["id"]: res for res in first if res["id"] != "listed"}
    services = build_services(settings)
    engine = services.engine
    with engine.begin() as conn:
        for res in first:
            writes.create(services, conn, res, res["id"], actor=SERVER)
    with engine.begin() as conn:
        for res_id, res in withdrawn.items():
            current = repository.get_current(conn, res["resourceType"], res_id)
            assert current is not None
            later = entry(res["resourceType"], res_id, "withdrawn", (res.get("providedBy") or {}).get("reference", "/").split("/")[1] or None)
            writes.replace(services, conn, current, later, actor=SERVER)
    # The database as 0016 left it: every withdrawn entry retired, and so logged.
    _downgrade(engine, "0016")
    with engine.begin() as conn:
        conn.execute(text("UPDATE entry_access SET visibility = 'retired' WHERE status = 'withdrawn'"))
        withdrawn_rids = "SELECT rid FROM entry_access WHERE status = 'withdrawn'"
        conn.execute(text(f"UPDATE resource SET visibility = 'retired' WHERE rid IN ({withdrawn_rids})"))
        conn.execute(
            text(
                "UPDATE change_log SET visibility = 'retired' WHERE seq IN"
                f" (SELECT max(seq) FROM change_log WHERE rid IN ({withdrawn_rids}) GROUP BY rid)"
            )
        )
    services.engine.dispose()
    upgrade(engine, "head")
    restarted = build_services(settings)  # the next start
    with restarted.engine.connect() as conn:
        rows = conn.execute(
            select(resource.c.res_id, entry_access.c.visibility, resource.c.visibility).join(
                entry_access, entry_access.c.rid == resource.c.rid
            )
        ).all()
        logged = conn.execute(
            select(change_log.c.visibility, change_log.c.previous_visibility)
            .join(resource, resource.c.rid == change_log.c.rid)
            .where(resource.c.res_id == "applied")
            .order_by(change_log.c.seq)
        ).all()
    restarted.engine.dispose()
    found = {res_id: (facts, searched) for res_id, facts, searched in rows}
    assert found == {
        "listed": ("public", "public"),
        "left": ("retired", "retired"),
        "bare": ("retired", "retired"),
        "applied": ("hidden", "hidden"),
        "applied-offer": ("hidden", "hidden"),
    }
    # Its past shows it to no one now; its last change tells who had it that it left.
    assert [v for v, _ in logged[:-1]] == ["hidden"] * (len(logged) - 1)
    assert tuple(logged[-1]) == ("hidden", "retired")


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_stored_json_is_compressed_with_lz4_where_postgresql_has_it(engine: Engine):
    """Migration 0016: a bulk load's database CPU on each stored JSON halves, reads decompress
    faster. The value stored after the migration says which method compressed it."""
    ensure_schema(engine)
    big = '{"resourceType":"Basic","text":"' + "a rather long repeated sentence " * 200 + '"}'
    with engine.begin() as conn:
        has_lz4 = "lz4" in conn.execute(
            text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        ).scalar_one()
        rid = conn.execute(
            text(
                "INSERT INTO resource (res_type, res_id, version_id, last_updated, deleted, content)"
                " VALUES ('Basic', 'lz4-check', 1, now(), false, :c) RETURNING rid"
            ),
            {"c": big},
        ).scalar_one()
        method = conn.execute(text("SELECT pg_column_compression(content) FROM resource WHERE rid = :r"), {"r": rid})
        assert method.scalar_one() == ("lz4" if has_lz4 else "pglz")
        conn.rollback()
