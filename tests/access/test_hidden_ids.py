"""A hidden entry is answered exactly as an unknown id is: the same 404, after the same SQL
statements. Were a hidden entry read first and judged after, its answer would take longer
than an unknown id's, and timing alone would tell an anonymous caller that a draft exists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tests.access.directory import ENTRIES, PRINCIPALS, Directory

ANONYMOUS = next(p for p in PRINCIPALS if p.role is None)
# Paths that answer 404 for an id the caller may not see, with `{key}` for `Type/id`.
BY_ID = {
    "read": ("GET", "/fhir/{key}"),
    "vread": ("GET", "/fhir/{key}/_history/1"),
    "instance history": ("GET", "/fhir/{key}/_history"),
    "$validate on an instance": ("GET", "/fhir/{key}/$validate"),
}


@contextmanager
def _statements(directory: Directory) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = directory.services.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("path", BY_ID)
def test_a_hidden_entry_costs_what_an_unknown_id_costs(directory: Directory, path: str) -> None:
    method, template = BY_ID[path]
    hidden = next(e for e in ENTRIES.values() if e.res_type == "HealthcareService" and not ANONYMOUS.reads(e))
    unknown = f"HealthcareService/{hidden.res_id}-never-written"
    answers, statements = [], []
    for key in (hidden.key, unknown):
        with _statements(directory) as seen:
            response = directory.web.open(template.format(key=key), method=method, headers=directory.headers(ANONYMOUS))
        answers.append((response.status_code, response.get_json()["issue"][0]["diagnostics"].replace(key, "<id>")))
        statements.append([s.replace(hidden.res_id, "?").replace(unknown.split("/")[1], "?") for s in seen])
    assert answers[0] == answers[1] and answers[0][0] == 404, answers
    assert statements[0] == statements[1]
