"""What a search may look at: the caller's read scope, as SQL conditions on a row id.

The search engine does not decide who sees what (fhirsrv/access does); it asks a ReadScope
for every resource type it touches — the matches, what chains and `_has` look through, what
`_include` and `_revinclude` bring in — and adds the condition to its own SQL, so paging and
totals count exactly what the caller may see. There is no default: every search names its
scope, and a server-internal one says so with UNRESTRICTED.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import ColumnElement


class ReadScope(Protocol):
    def searchable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        """Which rows of `res_type` a search may match or look through (None: all)."""
        ...

    def readable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        """Which rows of `res_type` may be shown when reached by reference (an `_include`):
        what a read by id would show (None: all)."""
        ...


class _Unrestricted:
    def searchable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        return None

    def readable(self, res_type: str, rid: Any) -> ColumnElement[bool] | None:
        return None

    def __repr__(self) -> str:
        return "UNRESTRICTED"


# The server's own searches (conditional matches inside the loader, the terminology service).
UNRESTRICTED: ReadScope = _Unrestricted()
