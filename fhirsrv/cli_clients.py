"""`fhirsrv clients`: register, list and revoke the OAuth 2 clients of the administration API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import Connection

from fhirsrv.cli_common import DATABASE, engine_for


@click.group()
def clients() -> None:
    """OAuth 2 clients (client credentials; secret or private_key_jwt)."""


@clients.command("add")
@click.argument("name")
@click.option(
    "--scopes", required=True, help='SMART scopes, e.g. "system/HealthcareService.cruds system/*.rs".'
)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["regional-admin", "territorial-admin", "structure-referent", "partner-reader"]),
    help="partner-reader: a coordination platform reading the public view and delisted entries.",
)
@click.option("--departement", "departements", multiple=True, help="Département code (territorial admin).")
@click.option("--organization", default=None, help="Organization/ID (structure referent).")
@click.option(
    "--kind",
    default=None,
    type=click.Choice(["3c", "dac"]),
    help="Territorial admin: 3c validates authorised health establishments, dac every other structure.",
)
@click.option("--email", default=None, help="Where the procedure's messages to this client's people go.")
@click.option(
    "--commune",
    "communes",
    multiple=True,
    help="Territorial admin: an INSEE commune code of its territory (a DAC area smaller than a département).",
)
@click.option(
    "--jwks",
    "jwks_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public JWKS file: the client authenticates with private_key_jwt instead of a secret.",
)
@DATABASE
def add(
    name: str,
    scopes: str,
    role: str,
    departements: tuple[str, ...],
    organization: str | None,
    kind: str | None,
    email: str | None,
    communes: tuple[str, ...],
    jwks_file: Path | None,
    database: str | None,
) -> None:
    """Register a client; prints its client_id (and its secret, shown this once)."""
    from fhirsrv.access import scopes as smart
    from fhirsrv.auth.clients import add_client

    bad = [s for s in scopes.split() if not smart.is_valid(s)]
    if bad or not scopes.split():
        raise click.BadParameter(f"not SMART scopes: {' '.join(bad) or '(none)'}", param_hint="--scopes")
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text())
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--jwks") from exc
    engine = engine_for(database)
    try:
        with engine.begin() as conn:
            _check_organization(conn, organization)
            client, secret = add_client(
                conn, name, " ".join(scopes.split()), role, list(departements), organization, jwks, kind, email,
                list(communes),
            )
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    out = client.public_view()
    if secret is not None:
        out["client_secret"] = secret
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


def _check_organization(conn: Connection, organization: str | None) -> None:
    """A referent's Organization must be in this database: a typo, or a database other than the
    server's, would give a client that silently sees nothing of its structure."""
    from fhirsrv.storage import repository

    if organization is None or not organization.startswith("Organization/"):
        return  # add_client says what is wrong with it
    stored = repository.get_current(conn, "Organization", organization.removeprefix("Organization/"))
    if stored is None or stored.deleted:
        raise ValueError(
            f"{organization} does not exist in this database (give --database the URL `fhirsrv serve` uses)"
        )


@clients.command("list")
@DATABASE
def list_(database: str | None) -> None:
    """Every registered client (never a secret) as a JSON array."""
    from fhirsrv.auth.clients import list_clients

    engine = engine_for(database)
    with engine.connect() as conn:
        rows = [c.public_view() for c in list_clients(conn)]
    engine.dispose()
    click.echo(json.dumps(rows, indent=2, ensure_ascii=False))


@clients.command("revoke")
@click.argument("client_id")
@DATABASE
def revoke(client_id: str, database: str | None) -> None:
    """Revoke a client: it gets no new token (tokens already issued expire within minutes)."""
    from fhirsrv.auth.clients import revoke_client

    engine = engine_for(database)
    with engine.begin() as conn:
        found = revoke_client(conn, client_id)
    engine.dispose()
    if not found:
        click.echo(f"error: no client {client_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"client_id": client_id, "revoked": True}))
