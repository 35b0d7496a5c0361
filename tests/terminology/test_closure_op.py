"""ConceptMap/$closure: a client's named closure table, kept in the database, answered from the
server's subsumption closure (initialise, add concepts, resynchronise, per-client tables)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.conceptmap import ConceptMap

import fhirsrv.interactions.terminology_ops  # noqa: F401  (registers the operations)
from fhirsrv.app import create_app
from fhirsrv.errors import NotFound
from fhirsrv.storage.engine import write_transaction
from fhirsrv.terminology import client_closure

CAT = "https://sos.example.org/fhir/CodeSystem/sos-category"
AGE = "https://sos.example.org/fhir/CodeSystem/sos-age-group"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def closure(client, name: str | None, *codes: tuple[str, str], version: str | None = None):  # type: ignore[no-untyped-def]
    params: list[dict[str, Any]] = [{"name": "name", "valueString": name}] if name is not None else []
    params += [{"name": "concept", "valueCoding": {"system": s, "code": c}} for s, c in codes]
    if version is not None:
        params.append({"name": "version", "valueString": version})
    return client.post(
        "/fhir/$closure", json={"resourceType": "Parameters", "parameter": params}, headers=FHIR_JSON
    )


def relationships(cm: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(system, source code, equivalence, target code) of a $closure answer."""
    return {
        (g["source"], e["code"], t["equivalence"], t["code"])
        for g in cm.get("group", [])
        for e in g["element"]
        for t in e["target"]
    }


def test_initialise_then_add_concepts_returns_only_new_subsumptions(client):
    init = closure(client, "directory")
    assert init.status_code == 200
    body = init.get_json()
    ConceptMap.model_validate(body)  # a valid R4 ConceptMap
    assert body["resourceType"] == "ConceptMap" and body["version"] == "0" and "group" not in body

    first = closure(client, "directory", (CAT, "douleur-hypnoanalgesie")).get_json()
    assert first["version"] == "1" and relationships(first) == set()

    second = closure(client, "directory", (CAT, "douleur")).get_json()
    ConceptMap.model_validate(second)
    assert second["version"] == "2"
    # the source is-a the target: the target subsumes it
    assert relationships(second) == {(CAT, "douleur-hypnoanalgesie", "subsumes", "douleur")}

    third = closure(
        client, "directory", (CAT, "douleur-analgesie-intrathecale"), (CAT, "sp-lisp"), (CAT, "douleur")
    ).get_json()
    assert third["version"] == "3"
    assert relationships(third) == {(CAT, "douleur-analgesie-intrathecale", "subsumes", "douleur")}

    again = closure(client, "directory", (CAT, "douleur"), (CAT, "sp-lisp")).get_json()
    assert again["version"] == "3" and relationships(again) == set()

    parent = closure(client, "directory", (CAT, "soins-palliatifs")).get_json()
    assert relationships(parent) == {(CAT, "sp-lisp", "subsumes", "soins-palliatifs")}


def test_resynchronise_sends_everything_since_a_version(client):
    closure(client, "sync")
    closure(client, "sync", (CAT, "douleur"))
    closure(client, "sync", (CAT, "douleur-hypnoanalgesie"))
    closure(client, "sync", (CAT, "douleur-analgesie-intrathecale"))
    everything = closure(client, "sync", version="0").get_json()
    assert everything["version"] == "3"
    assert relationships(everything) == {
        (CAT, "douleur-hypnoanalgesie", "subsumes", "douleur"),
        (CAT, "douleur-analgesie-intrathecale", "subsumes", "douleur"),
    }
    recent = closure(client, "sync", version="2").get_json()
    assert relationships(recent) == {(CAT, "douleur-analgesie-intrathecale", "subsumes", "douleur")}
    assert closure(client, "sync", version="9").status_code == 400
    assert closure(client, "sync", version="x").status_code == 400


def test_reinitialising_empties_the_table(client):
    closure(client, "again")
    closure(client, "again", (CAT, "douleur"))
    assert closure(client, "again").get_json()["version"] == "0"
    answer = closure(client, "again", (CAT, "douleur-hypnoanalgesie")).get_json()
    assert answer["version"] == "1" and relationships(answer) == set()


def test_systems_do_not_mix_and_unknown_concepts_are_kept_without_relationships(client):
    closure(client, "mixed")
    answer = closure(
        client, "mixed", (CAT, "douleur"), (AGE, "douleur-hypnoanalgesie"), ("http://unknown", "x")
    ).get_json()
    assert relationships(answer) == set()
    answer = closure(client, "mixed", (CAT, "douleur-hypnoanalgesie")).get_json()
    assert relationships(answer) == {(CAT, "douleur-hypnoanalgesie", "subsumes", "douleur")}


def test_errors(client):
    assert closure(client, "never-initialised", (CAT, "douleur")).status_code == 404
    assert closure(client, None, (CAT, "douleur")).status_code == 400
    assert client.get("/fhir/$closure?name=directory").status_code == 405
    closure(client, "bad")
    no_code = client.post(
        "/fhir/$closure",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "name", "valueString": "bad"},
                {"name": "concept", "valueCoding": {"system": CAT}},
            ],
        },
        headers=FHIR_JSON,
    )
    assert no_code.status_code == 400
    assert closure(client, "x" * 300).status_code == 400


def test_table_is_continued_by_another_process_on_the_same_database(client, settings):
    closure(client, "shared")
    closure(client, "shared", (CAT, "douleur"))
    other = create_app(settings)
    try:
        answer = closure(other.test_client(), "shared", (CAT, "douleur-hypnoanalgesie")).get_json()
    finally:
        other.extensions["fhirsrv"].engine.dispose()
    assert answer["version"] == "2"
    assert relationships(answer) == {(CAT, "douleur-hypnoanalgesie", "subsumes", "douleur")}


def test_each_client_has_its_own_tables(client, app):
    engine = app.extensions["fhirsrv"].engine
    with write_transaction(engine) as conn:
        client_closure.initialise(conn, "client-a", "problems")
        client_closure.add_concepts(conn, "client-a", "problems", [{"system": CAT, "code": "douleur"}])
        with pytest.raises(NotFound):
            client_closure.add_concepts(conn, "client-b", "problems", [{"system": CAT, "code": "douleur"}])
        client_closure.initialise(conn, "client-b", "problems")
        answer = client_closure.add_concepts(
            conn, "client-b", "problems", [{"system": CAT, "code": "douleur-hypnoanalgesie"}]
        )
    assert answer["version"] == "1" and relationships(answer) == set()


def test_capability_statement_lists_closure(client):
    statement = client.get("/fhir/metadata").get_json()
    system_ops = {op["name"]: op["definition"] for op in statement["rest"][0].get("operation", [])}
    assert system_ops.get("closure") == "http://hl7.org/fhir/OperationDefinition/ConceptMap-closure"
