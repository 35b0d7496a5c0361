"""The access facts are right however the data arrives: a file load (in-process or through
the workers, dependents before their structure), one write at a time, or a database written
before the facts existed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from fhirsrv.access.principal import ANONYMOUS
from fhirsrv.app import build_services
from fhirsrv.interactions import load
from fhirsrv.interactions.context import Services
from fhirsrv.settings import Settings
from fhirsrv.storage import changes
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.schema import entry_access, idx_token, resource, structure_territory
from tests.access.directory import CANONICAL, ENTRIES, Entry, visibility

NAMES = {0: "public", 1: "retired", 2: "hidden"}


def _services(db_url: str) -> Services:
    return build_services(
        Settings.from_env(database_url=db_url, load_demo=False, auth=False, canonical_base=CANONICAL, load_workers=2)
    )


def _write_file(folder: Path) -> Path:
    """The fixture directory as one NDJSON file, people and offers before their structures."""
    order = {"Practitioner": 0, "PractitionerRole": 1, "HealthcareService": 2, "Endpoint": 3, "Location": 4, "Organization": 5}
    entries = sorted(ENTRIES.values(), key=lambda e: order[e.res_type])
    path = folder / "directory.ndjson"
    path.write_text("".join(json.dumps(e.body) + "\n" for e in entries), encoding="utf-8")
    return path


def _visibilities(services: Services) -> dict[str, str]:
    """Each entry's visibility, after checking that the rows searches read agree with it (a
    search filters on those copies, not on entry_access)."""
    with read_transaction(services.engine) as conn:
        rows = conn.execute(
            select(resource.c.res_type, resource.c.res_id, entry_access.c.visibility, resource.c.visibility).join(
                entry_access, entry_access.c.rid == resource.c.rid
            )
        ).all()
        flags = conn.execute(
            select(resource.c.res_type, resource.c.res_id, idx_token.c.public, entry_access.c.visibility)
            .join(idx_token, idx_token.c.rid == resource.c.rid)
            .join(entry_access, entry_access.c.rid == resource.c.rid)
        ).all()
    assert [(t, i, v) for t, i, v, copied in rows if copied != v] == []
    assert [(t, i) for t, i, public, v in flags if public != (v == "public")] == []
    assert flags, "the fixture's entries have token index rows"
    return {f"{t}/{i}": v for t, i, v, _ in rows}


def _expected() -> dict[str, str]:
    return {key: NAMES[visibility(entry)] for key, entry in ENTRIES.items()}


@pytest.mark.parametrize("through_workers", [False, True], ids=["in-process", "workers"])
def test_a_file_load_derives_every_visibility(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through_workers: bool
) -> None:
    if through_workers:
        monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)
    services = _services(db_url)
    load.load_paths(services, [_write_file(tmp_path)])
    assert _visibilities(services) == _expected()
    with read_transaction(services.engine) as conn:
        territory = set(conn.execute(select(structure_territory.c.structure, structure_territory.c.departement)))
    assert ("o29-draft", "29") in territory and ("o35-published", "35") in territory
    services.engine.dispose()


def test_a_database_without_facts_gets_them_at_start(db_url: str, tmp_path: Path) -> None:
    services = _services(db_url)
    load.load_paths(services, [_write_file(tmp_path)])
    with write_transaction(services.engine) as conn:
        conn.execute(delete(entry_access))
        conn.execute(delete(structure_territory))
        # As migration 0011 leaves the searched rows of a database that had no facts.
        conn.execute(update(resource).values(visibility="hidden"))
        conn.execute(update(idx_token).values(public=False))
    # Without facts the policy fails closed: nothing of the directory is shown.
    with read_transaction(services.engine) as conn:
        some = [s for s in load.repository.get_many(conn, list(range(1, 400))) if s.res_type == "Organization"]
        assert some and not services.policy.visible(conn, ANONYMOUS, some)
    services.engine.dispose()
    restarted = _services(db_url)
    assert _visibilities(restarted) == _expected()
    restarted.engine.dispose()


def _entry(key: str) -> Entry:
    return ENTRIES[key]


def test_reloading_a_changed_structure_updates_its_entries(db_url: str, tmp_path: Path) -> None:
    services = _services(db_url)
    load.load_paths(services, [_write_file(tmp_path)])
    org = copy.deepcopy(_entry("Organization/o29-draft").body)
    org["extension"][0]["extension"][0]["valueCode"] = "published"
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "org.ndjson").write_text(json.dumps(org) + "\n", encoding="utf-8")
    load.load_paths(services, [changed])
    seen = _visibilities(services)
    assert seen["Organization/o29-draft"] == "public"
    assert seen["HealthcareService/hs-o29-draft"] == "public"
    assert seen["Practitioner/p-o29-draft"] == "public"
    services.engine.dispose()


def test_a_structure_changing_status_logs_its_entries_appearing_and_leaving(db_url: str, tmp_path: Path) -> None:
    """A syncing client must learn that an offer left the public view when its structure was
    delisted, though the offer itself did not change: the change log says so (storage/changes.py)."""
    services = _services(db_url)
    load.load_paths(services, [_write_file(tmp_path)])
    with read_transaction(services.engine) as conn:
        loaded = changes.last_seq(conn)
        first = {(c.res_type, c.res_id): c for c in changes.after(conn, 0, limit=10_000)}
    assert first[("Organization", "o29-published")].visibility == "public"
    assert first[("Organization", "o29-draft")].visibility == "hidden"

    def reload(org: dict, name: str) -> list[changes.Change]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "org.ndjson").write_text(json.dumps(org) + "\n", encoding="utf-8")
        with read_transaction(services.engine) as conn:
            start = changes.last_seq(conn)
        load.load_paths(services, [folder])
        with read_transaction(services.engine) as conn:
            return changes.after(conn, start, limit=10_000)

    published = copy.deepcopy(_entry("Organization/o29-draft").body)
    published["extension"][0]["extension"][0]["valueCode"] = "published"
    appeared = {(c.res_type, c.res_id): c for c in reload(published, "published")}
    org = appeared.pop(("Organization", "o29-draft"))
    assert org.new_version and (org.previous_visibility, org.visibility) == ("hidden", "public")
    offer = appeared[("HealthcareService", "hs-o29-draft")]
    assert not offer.new_version and offer.version_id == 1
    assert (offer.previous_visibility, offer.visibility) == ("hidden", "public")
    assert all(not c.new_version for c in appeared.values())

    delisted = copy.deepcopy(published)
    delisted["extension"][0]["extension"][0]["valueCode"] = "draft"
    left = {(c.res_type, c.res_id): c for c in reload(delisted, "delisted")}
    gone = left[("HealthcareService", "hs-o29-draft")]
    assert (gone.previous_visibility, gone.visibility) == ("public", "hidden")
    assert set(left) == set(appeared) | {("Organization", "o29-draft")}
    assert loaded < min(c.seq for c in left.values())
    services.engine.dispose()
