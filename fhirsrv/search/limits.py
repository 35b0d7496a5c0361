"""How much work one search may ask for, checked on the parsed request before any SQL is built.

Each of these multiplies the query the database runs, and a single anonymous request could ask
for all of them: 300 sort keys (19 s), a chain whose every link fans out to each type a
reference may point to, a `_filter` nested until the SQL parser overflows (a 500). Each limit
is a setting (fhirsrv/settings.py); a search past one is refused with 400 `too-costly` naming
the limit and its variable, so the client knows what to change.
"""

from __future__ import annotations

from fhirsrv.errors import TooCostly
from fhirsrv.search.filter import comparisons
from fhirsrv.search.parameters import Criterion
from fhirsrv.settings import VARIABLES, Settings


def refuse(what: str, setting: str, limit: int) -> TooCostly:
    return TooCostly(f"{what}; this server allows at most {limit} ({VARIABLES[setting]})")


def check_sort(keys: int, settings: Settings) -> None:
    if keys > settings.max_sort_keys:
        raise refuse(f"_sort names {keys} keys", "max_sort_keys", settings.max_sort_keys)


def check_includes(count: int, settings: Settings) -> None:
    if count > settings.max_includes:
        raise refuse(
            f"The search has {count} _include/_revinclude parameters", "max_includes", settings.max_includes
        )


def check_criteria(criteria: list[Criterion], settings: Settings) -> None:
    """Chain depth of each criterion and of each _filter path, and the number of tests they
    make together (the nesting of a _filter is checked as it is parsed, filter.py) (a _filter's comparisons count as parameters: each compiles to
    a subquery, as a parameter does)."""
    tests = 0
    for crit in criteria:
        if crit.tree is None:
            tests += 1
            _check_chain(chain_depth(crit.raw_name), crit.raw_name, settings)
            continue
        for compare in comparisons(crit.tree):
            tests += 1
            _check_chain(len(compare.path) - 1, ".".join(compare.path), settings)
    if tests > settings.max_search_params:
        raise refuse(
            f"The search makes {tests} tests (parameters and _filter comparisons)",
            "max_search_params",
            settings.max_search_params,
        )


def chain_depth(name: str) -> int:
    """References a criterion follows: one per chain link (`.`) and one per `_has` level."""
    return name.count(".") + name.count("_has:")


def _check_chain(depth: int, name: str, settings: Settings) -> None:
    if depth > settings.max_chain_depth:
        raise refuse(
            f"'{name}' follows {depth} references (chain links and _has levels)",
            "max_chain_depth",
            settings.max_chain_depth,
        )
