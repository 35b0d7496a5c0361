"""The rules that built a database's index rows are recorded, and `fhirsrv db upgrade` rebuilds
rows built by other rules, so a search finds after an upgrade what it would on a fresh load."""

from __future__ import annotations

from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete, update

from fhirsrv.cli import main
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search import rules
from fhirsrv.search.registry import build_registry
from fhirsrv.settings import Settings
from fhirsrv.storage import repository
from fhirsrv.storage.schema import idx_string, server_state


def _names(client: FlaskClient, name: str) -> list[str]:
    bundle = client.get(f"/fhir/Organization?name={name}").get_json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_the_fingerprint_follows_the_definitions(settings: Settings):
    registry = build_registry(settings, SUPPORTED_TYPES)
    assert rules.fingerprint(registry) == rules.fingerprint(build_registry(settings, SUPPORTED_TYPES))
    registry.add_definition(
        {
            "resourceType": "SearchParameter",
            "code": "alias",
            "base": ["Organization"],
            "type": "string",
            "expression": "Organization.alias",
            "status": "active",
        },
        SUPPORTED_TYPES,
    )
    assert rules.fingerprint(registry) != rules.fingerprint(build_registry(settings, SUPPORTED_TYPES))


def test_db_upgrade_rebuilds_rows_built_by_other_rules_once(client: FlaskClient, engine: Engine, db_url: str):
    """A new database is stamped at its first start; rows an earlier version wrote under other
    rules (here: no name rows) are rebuilt by the next upgrade, and only by that one."""
    services = client.application.extensions["fhirsrv"]
    with engine.connect() as conn:
        assert rules.recorded(conn) == services.search.rules
    created = client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Ligue 29"})
    assert created.status_code == 201
    assert _names(client, "ligue") == [created.get_json()["id"]]

    with engine.begin() as conn:  # as an earlier version left it
        conn.execute(delete(idx_string).where(idx_string.c.param == "name"))
        conn.execute(
            update(server_state).where(server_state.c.key == rules.STATE_KEY).values(value="earlier")
        )
    assert _names(client, "ligue") == []

    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--database", db_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "search indexes rebuilt for" in upgraded.output
    assert _names(client, "ligue") == [created.get_json()["id"]]
    with engine.connect() as conn:
        assert rules.recorded(conn) == services.search.rules

    again = CliRunner().invoke(main, ["db", "upgrade", "--database", db_url])
    assert again.exit_code == 0 and "rebuilt" not in again.output and "added" not in again.output


def test_reindex_of_every_type_records_the_rules_and_of_one_type_does_not(
    client: FlaskClient, engine: Engine, db_url: str
):
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Ligue 29"})
    with engine.begin() as conn:
        conn.execute(
            update(server_state).where(server_state.c.key == rules.STATE_KEY).values(value="earlier")
        )
    one_type = CliRunner().invoke(main, ["reindex", "--type", "Organization", "--database", db_url])
    assert one_type.exit_code == 0, one_type.output
    with engine.connect() as conn:
        assert rules.recorded(conn) == "earlier"
    every_type = CliRunner().invoke(main, ["reindex", "--database", db_url])
    assert every_type.exit_code == 0 and '"reindexed": 1' in every_type.output
    with engine.connect() as conn:
        assert rules.recorded(conn) == client.application.extensions["fhirsrv"].search.rules


def test_a_type_added_since_the_recorded_rules_needs_no_rebuild(client: FlaskClient, engine: Engine, db_url: str):
    """A database indexed by the version before Subscription was served (its rules are this
    version's without that type) holds no Subscription: `fhirsrv db upgrade` records this
    version's rules instead of rebuilding every row. One that does hold one is rebuilt."""
    services = client.application.extensions["fhirsrv"]
    earlier_types = tuple(t for t in SUPPORTED_TYPES if t not in rules.ADDED_TYPES)
    earlier = rules.fingerprint(build_registry(services.settings, earlier_types))
    assert earlier == services.search.rules_before_added_types != services.search.rules
    assert client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Ligue 29"}).status_code == 201
    with engine.begin() as conn:
        rules.record(conn, earlier)
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--database", db_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "search indexes rebuilt" not in upgraded.output
    with engine.connect() as conn:
        assert rules.recorded(conn) == services.search.rules
    # With a Subscription stored (as if written under other rules), the rows are rebuilt.
    with engine.begin() as conn:
        repository.create(conn, {"resourceType": "Subscription", "status": "off"}, "kept")
        rules.record(conn, earlier)
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--database", db_url])
    assert "search indexes rebuilt" in upgraded.output
