"""Connects the optional services to the write path and the operation registry.

Kept apart from app.py so that the CLI loader and the HTTP app install the very same hooks:
a CodeSystem loaded from a file gets its closure table exactly as one PUT over HTTP does.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from sqlalchemy import Connection

from fhirsrv.interactions.context import Services
from fhirsrv.storage.repository import StoredResource

log = logging.getLogger("fhirsrv")

# Modules that register @operation functions when imported.
OPERATION_MODULES = ("fhirsrv.interactions.terminology_ops", "fhirsrv.interactions.validate_op")


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def install(services: Services) -> None:
    hooks = []
    from fhirsrv.storage import repository
    from fhirsrv.storage.jsonfmt import loads
    from fhirsrv.terminology import closure
    from fhirsrv.terminology.valueset import ValueSetExpander

    def _closure_hook(conn: Connection, stored: StoredResource, res: dict[str, Any] | None) -> None:
        if stored.res_type != "CodeSystem":
            return
        if res is not None:
            closure.rebuild_closure(conn, res)
            return
        previous = repository.get_version(conn, stored.res_type, stored.res_id, stored.version_id - 1)
        if previous is not None and previous.content:
            closure.drop_closure(conn, loads(previous.content))

    hooks.append(_closure_hook)
    services.search.expander = ValueSetExpander()

    def _search_parameter_hook(conn: Connection, stored: StoredResource, res: dict[str, Any] | None) -> None:
        if stored.res_type == "SearchParameter":
            services.search.load_stored_parameters(conn)

    hooks.append(_search_parameter_hook)
    services.extras["write_hooks"] = hooks
    services.extras["profile_issues"] = _profile_issues(services)
    for module in OPERATION_MODULES:
        _optional(module)


ADMIN_ROLES = ("regional-admin", "territorial-admin")


def _profile_issues(services: Services) -> Any:
    """Profile checks of the write path: the profiles a resource claims (and those $validate
    asks for), plus the SOS profile of directory types when the writer is not an administrator
    (FHIRSRV_ENFORCE_SOS_PROFILES=non-admin, the default; `all` or `claimed-only` change it)."""
    import os

    from fhirsrv.interactions.context import current_principal
    from fhirsrv.validation import profile_issues_hook
    from fhirsrv.validation.codes import stored_terminology

    mode = services.settings.extra.get("enforce_sos_profiles") or os.environ.get(
        "FHIRSRV_ENFORCE_SOS_PROFILES", "non-admin"
    )
    claimed = profile_issues_hook()
    enforced = profile_issues_hook(enforce_sos=True)

    def issues(res: dict[str, Any], profiles: tuple[str, ...]) -> list[Any]:
        principal = current_principal.get()
        enforce = mode == "all" or (
            mode == "non-admin"
            and principal is not None
            and getattr(principal, "role", "") not in ADMIN_ROLES
        )
        # Bindings to the server's own ValueSets are checked against the stored terminology.
        with stored_terminology(services.engine):
            return (enforced if enforce else claimed)(res, profiles)

    return issues


def install_http(app: Any, services: Services) -> None:
    """HTTP-level extensions: the OAuth 2 server and resource protection, when present."""
    auth = _optional("fhirsrv.auth")
    if auth is not None and hasattr(auth, "install"):
        auth.install(app, services)
