"""The server's signing key for access tokens: from settings, or generated once and kept in
the database (server_state), so every process of one deployment signs and verifies alike."""

from __future__ import annotations

from joserfc.jwk import RSAKey
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from fhirsrv.storage.schema import server_state

STATE_KEY = "auth.jwt_private_key"
ALGORITHM = "RS384"


def _with_kid(key: RSAKey) -> RSAKey:
    key.ensure_kid()
    return key


def load_signing_key(engine: Engine, configured_pem: str = "") -> RSAKey:
    if configured_pem:
        return _with_kid(RSAKey.import_key(configured_pem))
    with engine.connect() as conn:
        row = conn.execute(select(server_state.c.value).where(server_state.c.key == STATE_KEY)).first()
    if row and row.value:
        return _with_kid(RSAKey.import_key(row.value))
    key = RSAKey.generate_key(2048, private=True)
    pem = key.as_pem(private=True).decode()
    try:
        with engine.begin() as conn:
            conn.execute(server_state.insert().values(key=STATE_KEY, value=pem))
    except IntegrityError:
        # Another process generated it first: use theirs.
        return load_signing_key(engine)
    return _with_kid(RSAKey.import_key(pem))


def public_jwks(key: RSAKey) -> dict:
    public = key.as_dict(private=False)
    public.update({"use": "sig", "alg": ALGORITHM})
    return {"keys": [public]}
