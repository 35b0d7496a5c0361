"""What every interaction receives (services, request facts) and returns (a Result)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from fhirsrv.settings import Settings
from fhirsrv.storage.repository import StoredResource

if TYPE_CHECKING:
    from fhirsrv.search.engine import SearchEngine


# Who is calling, set by the api layer for the duration of a request (None: anonymous or no
# auth configured). A context variable, so interactions stay free of any HTTP framework.
current_principal: ContextVar[Any | None] = ContextVar("fhirsrv_principal", default=None)


@dataclass
class Services:
    """The long-lived objects an app is made of; built once by create_app()."""

    settings: Settings
    engine: Engine
    search: SearchEngine
    # Optional hooks installed by wiring.py / auth: write_hooks, write_guard, read_guard,
    # search_guard, profile_check, security_section.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestInfo:
    """The HTTP facts an interaction may depend on, already parsed by api/."""

    base_url: str  # e.g. "http://127.0.0.1:8080/fhir", no trailing slash
    prefer_return: str | None = None  # minimal | representation | OperationOutcome
    prefer_handling: str = "lenient"  # lenient | strict
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_none_exist: str | None = None  # query string of a conditional create


@dataclass
class Result:
    """An interaction's answer. `resource` may contain orjson.Fragment (stored JSON spliced as is)."""

    status: int = 200
    resource: Any = None
    stored: StoredResource | None = None
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # absolute URL of the (versioned) resource for Location header
