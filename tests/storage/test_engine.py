"""The PostgreSQL sessions the server opens: a search's plan is made for its values every time."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.conftest import ONLY_POSTGRES


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_statement_run_again_and_again_keeps_plans_made_for_its_values(engine: Engine):
    """The driver prepares a statement once it has run five times; PostgreSQL would then settle
    on a generic plan, blind to the values, and a search whose values matter (a département of
    300 offers or of 3) kept a plan made for neither: 14 ms became 50 ms at the eleventh run."""
    query = text("SELECT count(*) FROM resource WHERE res_type = :res_type AND res_id > :after")
    with engine.connect() as conn:
        for run in range(20):
            conn.execute(query, {"res_type": "Organization", "after": f"id-{run}"}).scalar_one()
        generic, custom = conn.execute(
            text("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements")
        ).one()
    assert generic == 0, f"{generic} runs used a generic plan"
    assert custom >= 10, "the driver did not prepare the statement: the test no longer tests anything"
