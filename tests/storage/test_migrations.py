"""The migrations build exactly the schema the code declares, and the last one can be undone."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

import fhirsrv.auth.tables  # noqa: F401  (its tables hang on the same metadata)
import fhirsrv.sync.export_tables  # noqa: F401  (likewise)
import fhirsrv.sync.tables  # noqa: F401  (likewise)
import fhirsrv.workflow.tables  # noqa: F401  (likewise)
from fhirsrv.storage.migrate import alembic_config, current, ensure_schema, upgrade
from fhirsrv.storage.schema import metadata
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
