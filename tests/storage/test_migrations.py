"""The migrations build exactly the schema the code declares, and the last one can be undone."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

import fhirsrv.auth.tables  # noqa: F401  (its tables hang on the same metadata)
import fhirsrv.sync.export_tables  # noqa: F401  (likewise)
import fhirsrv.sync.tables  # noqa: F401  (likewise)
import fhirsrv.workflow.tables  # noqa: F401  (likewise)
from fhirsrv.storage.migrate import alembic_config, current, ensure_schema, upgrade
from fhirsrv.storage.schema import metadata


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

