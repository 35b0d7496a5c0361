"""Builds the services every interaction receives, with plain imports and no optional part.

Kept apart from app.py so that the CLI loader and the HTTP app are built the very same way: a
CodeSystem loaded from a file gets its closure table exactly as one PUT over HTTP does, and a
file load goes through the same access policy (as the server) and the same write hooks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhirsrv.access.audit import AuditTrail
from fhirsrv.access.policy import AccessPolicy
from fhirsrv.access.principal import Principal, Role
from fhirsrv.canonical import Canonicals
from fhirsrv.errors import Issue
from fhirsrv.interactions import terminology_ops, validate_op
from fhirsrv.interactions.context import ProfileCheck, Services, WriteHook
from fhirsrv.interactions.cursors import CursorSeal
from fhirsrv.interactions.identifiers import DirectoryIdentifiers
from fhirsrv.interactions.operations import OperationRegistry
from fhirsrv.search import rules
from fhirsrv.search.engine import SearchEngine
from fhirsrv.settings import Settings
from fhirsrv.storage import changes, repository
from fhirsrv.storage.engine import engine_for, read_transaction, write_transaction
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.migrate import ensure_schema
from fhirsrv.storage.repository import StoredResource
from fhirsrv.sync import export_ops, subscriptions
from fhirsrv.terminology import closure
from fhirsrv.terminology.valueset import ValueSetExpander
from fhirsrv.validation import profile_issues_hook
from fhirsrv.validation.codes import stored_terminology
from fhirsrv.workflow import operations as workflow_ops

# The modules whose @operation functions the server offers.
OPERATION_MODULES = (terminology_ops, validate_op, workflow_ops, export_ops)
ADMIN_ROLES = (Role.REGIONAL_ADMIN, Role.TERRITORIAL_ADMIN, Role.SERVER)


def build_services(settings: Settings) -> Services:
    engine = engine_for(settings)
    ensure_schema(engine)
    search = SearchEngine(settings)
    search.expander = ValueSetExpander()
    policy = AccessPolicy(Canonicals(settings.canonical_base))
    services = Services(
        settings=settings,
        engine=engine,
        search=search,
        policy=policy,
        audit=AuditTrail(Canonicals(settings.canonical_base), search.index, enabled=settings.auth),
        profile_check=_profile_check(settings, engine),
        write_hooks=(),
        resource_rules={subscriptions.TYPE: subscriptions.rule},
        operations=OperationRegistry(OPERATION_MODULES),
        cursors=CursorSeal(engine),
        identifiers=DirectoryIdentifiers(Canonicals(settings.canonical_base)),
    )
    services.write_hooks = (_closure_hook, _search_parameter_hook(services))
    with read_transaction(engine) as conn:
        search.load_stored_parameters(conn)
    # Start-up housekeeping is a load's kind of work: at a million resources a rebuild of the
    # access facts runs longer than one request's statement timeout, and a server that cannot
    # start is worse than one that starts slowly.
    with write_transaction(engine, unbounded=True) as conn:
        policy.facts.rebuild_if_missing(conn)
        never_listed = policy.facts.hide_never_listed(conn)
        services.identifiers.fill_if_missing(conn)
        rules.stamp_if_empty(conn, search.rules)
        rules.adopt_added_types(conn, search.rules, search.rules_before_added_types)
    if never_listed:  # after the commit that logged their removal
        with write_transaction(engine, unbounded=True) as conn:
            changes.forget_shown(conn, never_listed)
    return services


def _closure_hook(conn: Connection, stored: StoredResource, res: dict[str, Any] | None) -> None:
    """A CodeSystem's subsumption closure changes with it, in the same transaction."""
    if stored.res_type != "CodeSystem":
        return
    if res is not None:
        closure.rebuild_closure(conn, res)
        return
    previous = repository.get_version(conn, stored.res_type, stored.res_id, stored.version_id - 1)
    if previous is not None and previous.content:
        closure.drop_closure(conn, loads(previous.content))


def _search_parameter_hook(services: Services) -> WriteHook:
    def hook(conn: Connection, stored: StoredResource, res: dict[str, Any] | None) -> None:
        if stored.res_type == "SearchParameter":
            services.search.load_stored_parameters(conn)

    return hook


def _profile_check(settings: Settings, engine: Any) -> ProfileCheck:
    """Profile checks of the write path: the profiles a resource claims (and those $validate
    asks for), plus the SOS profile of directory types when the writer is not an administrator
    (FHIRSRV_ENFORCE_SOS_PROFILES=non-admin, the default; `all` or `claimed-only` change it)."""
    mode = settings.enforce_sos_profiles
    claimed = profile_issues_hook()
    enforced = profile_issues_hook(enforce_sos=True)

    def issues(res: dict[str, Any], profiles: tuple[str, ...], principal: Principal) -> list[Issue]:
        enforce = mode == "all" or (mode == "non-admin" and principal.role not in ADMIN_ROLES)
        # Bindings to the server's own ValueSets are checked against the stored terminology.
        with stored_terminology(engine):
            return (enforced if enforce else claimed)(res, profiles)

    return issues
